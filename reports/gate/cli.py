"""``python -m reports gate BASELINE CURRENT`` and ``python -m reports calibrate RUN_A RUN_B``.

Exit codes of ``gate``: 0 pass; 1 a regression, a case the head failed or lost, or a case it
cannot tell at this run count (noisier than its threshold); 2 unusable input (always with the
reason, nothing written): results that cannot be read whole, a folder that is neither a run nor
a folder of runs, the same run on both sides, nothing compared, environments that differ, a bad
option value.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path

from bench.schema.files import (DEFAULT_RESULTS_DIR, ENVIRONMENT_FILE, GATE_JSON, GATE_MD, NOISE_FLOOR_FILE,
                                RUN_FILES)
from bench.schema.results import write_atomic

from ..environment import read_environment
from ..format import count
from ..load import ResultsError, load
from ..traces.diff import gate_traces
from . import compare as gating
from .render import flagged_cases, markdown, to_json

DEFAULT_NOISE_FLOOR = Path(DEFAULT_RESULTS_DIR) / NOISE_FLOOR_FILE


def _fraction(option: str, example: str):
    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not number >= 0 or math.isinf(number):
            raise argparse.ArgumentTypeError(
                f"invalid {option} {text!r}; expected a fraction of 0 or more, e.g. {example}")
        return number
    return parse


def _threshold_override(option: str, example: str):
    def parse(text: str) -> tuple[str, float]:
        pattern, sep, value = text.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not sep or not pattern or not number >= 0 or math.isinf(number):
            raise argparse.ArgumentTypeError(
                f"invalid {option} {text!r}; expected PATTERN=FRACTION, e.g. {example!r} "
                "(the pattern matches case ids literally except * and ?)")
        return pattern, number
    return parse


def _is_run(folder: Path) -> bool:
    return any((folder / name).is_file() for name in RUN_FILES)


def _not_a_run(folder: Path) -> str:
    runs = [p for p in folder.iterdir() if p.is_dir() and _is_run(p)]
    return f"{folder.name}/ (a folder of {count(len(runs), 'run')}: give it as a side of its own)" if runs \
        else f"{folder.name}/ (no {' or '.join(RUN_FILES)})"


def run_folders(path: Path) -> list[Path]:
    """A results file or run folder, or a folder of run folders (several interleaved runs).

    A folder without results files is read as a folder of runs only when every folder in it is
    a run; otherwise it is refused, each other folder named, rather than one of them chosen or
    reported as a run without results (``results/`` holding ``base/`` and ``head/``, say)."""
    if not path.is_dir() or _is_run(path):
        return [path]
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    others = [_not_a_run(p) for p in folders if not _is_run(p)]
    if others:
        raise ResultsError(
            f"{path}: not a run (no {' or '.join(RUN_FILES)} in it), so it was read as a folder of runs, but "
            f"{len(others)} of its {count(len(folders), 'folder')} are not runs: {'; '.join(others)}. Give a run "
            "folder, or a folder that holds run folders only")
    return folders or [path]


def side_note(label: str, path: Path, aggregate: str) -> str | None:
    """Which runs a side given as a folder of runs was taken as, and how they combine."""
    runs = run_folders(path)
    if runs == [path]:
        return None
    names = ", ".join(p.name for p in runs) if len(runs) <= 4 else f"{runs[0].name} … {runs[-1].name}"
    how = "each case's fastest run" if aggregate == "best" else "every run's rounds pooled"
    return f"{label} {path}: a folder of {count(len(runs), 'run')} ({names}), all of them read; compared: {how}."


def _results_file(folder: Path) -> Path:
    return next((folder / name for name in RUN_FILES if (folder / name).is_file()), folder)


def run_identity(path: Path) -> tuple[Path, str]:
    """A run folder's (or results file's) resolved path and a digest of its results and
    environment files: two folders holding the same files are the same run."""
    results = _results_file(path) if path.is_dir() else path
    digest = hashlib.sha256()
    for file in (results, (path if path.is_dir() else path.parent) / ENVIRONMENT_FILE):
        if file.is_file():
            digest.update(file.read_bytes())
        digest.update(b"\0")
    return path.resolve(), digest.hexdigest()


def same_runs(baseline: Path, current: Path) -> list[str]:
    """The runs given on both sides, by path or by identical files."""
    base = {run: run_identity(run) for run in run_folders(baseline)}
    same = []
    for run in run_folders(current):
        path, digest = run_identity(run)
        for other, (other_path, other_digest) in base.items():
            if path == other_path:
                same.append(f"{other} is {run}")
            elif digest == other_digest:
                same.append(f"{other} and {run} hold the same files")
    return same


def _load_quietly(path: Path):
    """A side's results, complete: a part that could not be read (a line cut short or corrupt,
    a garbage benchmark.json) is refused, since its cases would read as lost on the head."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # environments are checked explicitly below
        df = load(*run_folders(path))
    skipped = df.attrs.get("skipped", [])
    if skipped:
        raise ResultsError("part of the results cannot be read: " + "; ".join(skipped) + ". The gate compares "
                           "complete results only: repair or remove what is named, or rerun")
    return df


def read_noise_floor(path: Path | None) -> dict[str, float]:
    if path is None:
        path = DEFAULT_NOISE_FLOOR if DEFAULT_NOISE_FLOOR.is_file() else None
        if path is None:
            return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such noise-floor file (run `nox -s calibrate` first)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not a valid noise-floor file ({exc})") from None
    floors = data.get("noise_floor") if isinstance(data, dict) else None
    if not isinstance(floors, dict):
        raise ResultsError(f"{path}: not a valid noise-floor file (no 'noise_floor' object)")
    return {str(k): float(v) for k, v in floors.items()}


def gate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports gate", description=gating.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path,
                        help="results file, run folder, or folder of run folders (several runs) of the base")
    parser.add_argument("current", type=Path, help="the same for the change")
    parser.add_argument("--threshold", type=_fraction("--threshold", "0.05"), default=gating.DEFAULT_THRESHOLD,
                        help="smallest relative change of wall time that counts (default 0.05)")
    parser.add_argument("--case-threshold", type=_threshold_override("--case-threshold", "train_step[lenet*]=0.10"),
                        action="append", default=[], metavar="PATTERN=FRACTION",
                        help="per-case threshold; the pattern matches case ids literally except * and ? "
                             "(brackets are literal); repeatable, the last match wins")
    parser.add_argument("--noise-floor", type=Path, default=None,
                        help=f"calibrated noise floors, part of each case's noise (default: {DEFAULT_NOISE_FLOOR} "
                             "when present)")
    parser.add_argument("--alpha", type=float, default=gating.DEFAULT_ALPHA, help="significance level")
    parser.add_argument("--aggregate", choices=gating.AGGREGATES, default="best",
                        help="several runs of a case on one side: the fastest run (best, default) "
                             "or all rounds pooled (pool)")
    parser.add_argument("--normalize", action="store_true",
                        help="judge each case relative to the whole run's median shift, when that shift is "
                             "within --threshold (for noisy shared runners with several runs per side)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="pass even if the head did not measure cases the base measured (absent, skipped "
                             "or unsupported on the head); they are still listed")
    parser.add_argument("--count-threshold", type=_fraction("--count-threshold", "0.01"), default=None,
                        help="smallest relative change of instructions per call that counts (default: the "
                             "figure's declared tolerance, 0.01)")
    parser.add_argument("--case-count-threshold",
                        type=_threshold_override("--case-count-threshold", "train_step[lenet*]=0.02"),
                        action="append", default=[], metavar="PATTERN=FRACTION",
                        help="per-case instruction count threshold (patterns as --case-threshold); repeatable")
    parser.add_argument("--count-stability", type=_fraction("--count-stability", "0.005"),
                        default=gating.DEFAULT_COUNT_STABILITY,
                        help="a case whose count repeats spread more than this on a side is unstable and not "
                             "gated (default 0.005: half the 1%% threshold)")
    parser.add_argument("--allow-env-mismatch", action="store_true",
                        help="compare even if torch version, GPU or CPU differ (for instruction counts also "
                             "valgrind version and ISA, MKL/oneDNN kernels, Python version)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"folder for {GATE_MD} and {GATE_JSON} (default: the current run's folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        baseline, current = _load_quietly(args.baseline), _load_quietly(args.current)
        same = same_runs(args.baseline, args.current)
        if same:
            raise gating.GateInputError("the same run is given as baseline and current (" + "; ".join(same)
                                        + "); give the base's results first, then the head's")
        config = gating.GateConfig(threshold=args.threshold, case_thresholds=dict(args.case_threshold),
                                   noise_floor=read_noise_floor(args.noise_floor), alpha=args.alpha,
                                   normalize=args.normalize, aggregate=args.aggregate,
                                   allow_missing=args.allow_missing, count_threshold=args.count_threshold,
                                   case_count_thresholds=dict(args.case_count_threshold),
                                   count_stability=args.count_stability)
        mismatch = gating.check_environments(read_environment(run_folders(args.baseline)[0]),
                                             read_environment(run_folders(args.current)[0]),
                                             gating.environment_fields(baseline, current))
        if mismatch and not args.allow_env_mismatch:
            raise gating.GateInputError("the environments differ (" + "; ".join(mismatch)
                                        + "); pass --allow-env-mismatch to compare anyway")
        verdict = gating.gate(baseline, current, config)
    except (ResultsError, gating.GateInputError) as exc:
        print(f"gate: unusable input: {exc}", file=sys.stderr)
        return 2
    if mismatch:
        verdict["notes"].insert(0, "Environments differ: " + "; ".join(mismatch))
    sides = [side_note(label, path, args.aggregate) for label, path in (("Baseline", args.baseline),
                                                                         ("Current", args.current))]
    verdict["notes"][:0] = [note for note in sides if note]
    for warning in verdict["warnings"]:
        print(f"gate: warning: {warning}", file=sys.stderr)
    text = markdown(verdict, gate_traces(run_folders(args.baseline), run_folders(args.current), flagged_cases(verdict)))
    out_dir = args.output or (args.current if args.current.is_dir() else args.current.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / GATE_MD, text)
    document = dict(to_json(verdict), elapsed_s=time.perf_counter() - started,
                    baseline=str(args.baseline), current=str(args.current))
    write_atomic(out_dir / GATE_JSON, json.dumps(document, indent=2))
    print(text)
    print(f"written: {out_dir / GATE_MD}, {out_dir / GATE_JSON}")
    return 0 if verdict["passed"] else 1


def calibrate_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports calibrate",
                                     description="Store each case's noise floor from two or more runs of the same code.")
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                        help="at least 2: run folders or results files, or folders of run folders "
                             "(several runs each, combined as the gate combines them)")
    parser.add_argument("--aggregate", choices=gating.AGGREGATES, default="best",
                        help="how a folder of several runs counts as one (as for the gate)")
    parser.add_argument("--output", type=Path, default=DEFAULT_NOISE_FLOOR)
    args = parser.parse_args(argv)
    try:
        floors = gating.noise_floor([_load_quietly(run) for run in args.runs], aggregate=args.aggregate)
    except (ResultsError, gating.GateInputError) as exc:
        print(f"calibrate: unusable input: {exc}", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.output, json.dumps(dict(runs=[str(run) for run in args.runs], noise_floor=floors), indent=2))
    worst = max(floors.items(), key=lambda kv: kv[1])
    print(f"noise floor of {len(floors)} cases written to {args.output} "
          f"(largest: {worst[0]} {100 * worst[1]:.1f}%)")
    return 0
