"""``python -m reports gate BASELINE CURRENT`` and ``python -m reports calibrate RUN_A RUN_B``.

Exit codes of ``gate``: 0 pass, 1 regression, 2 unusable input (always with the reason).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from bench.files import DEFAULT_RESULTS_DIR, GATE_JSON, GATE_MD, NOISE_FLOOR_FILE, RUN_FILES

from ..environment import read_environment
from ..load import ResultsError, load
from . import compare as gating
from .render import markdown, to_json

DEFAULT_NOISE_FLOOR = Path(DEFAULT_RESULTS_DIR) / NOISE_FLOOR_FILE


def _threshold_override(text: str) -> tuple[str, float]:
    pattern, sep, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not sep or not pattern or number < 0:
        raise argparse.ArgumentTypeError(
            f"invalid --case-threshold {text!r}; expected PATTERN=FRACTION, e.g. 'train_step[lenet*]=0.10'")
    return pattern, number


def run_folders(path: Path) -> list[Path]:
    """A results file or run folder, or a folder of run folders (several interleaved runs)."""
    if path.is_dir() and not any((path / name).is_file() for name in RUN_FILES):
        runs = sorted(p for p in path.iterdir() if p.is_dir())
        if runs:
            return runs
    return [path]


def _load_quietly(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # environments are checked explicitly below
        return load(*run_folders(path))


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
    parser.add_argument("--threshold", type=float, default=gating.DEFAULT_THRESHOLD,
                        help="smallest relative change that counts (default 0.05)")
    parser.add_argument("--case-threshold", type=_threshold_override, action="append", default=[],
                        metavar="PATTERN=FRACTION", help="per-case threshold (fnmatch pattern); repeatable")
    parser.add_argument("--noise-floor", type=Path, default=None,
                        help=f"calibrated noise floors (default: {DEFAULT_NOISE_FLOOR} when present)")
    parser.add_argument("--alpha", type=float, default=gating.DEFAULT_ALPHA, help="significance level")
    parser.add_argument("--aggregate", choices=gating.AGGREGATES, default="best",
                        help="several runs of a case on one side: the fastest run (best, default) "
                             "or all rounds pooled (pool)")
    parser.add_argument("--normalize", action="store_true",
                        help="judge each case relative to the whole run's median shift (for noisy shared runners)")
    parser.add_argument("--allow-env-mismatch", action="store_true",
                        help="compare even if torch version, GPU or CPU differ")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"folder for {GATE_MD} and {GATE_JSON} (default: the current run's folder)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        baseline, current = _load_quietly(args.baseline), _load_quietly(args.current)
        config = gating.GateConfig(threshold=args.threshold, case_thresholds=dict(args.case_threshold),
                                   noise_floor=read_noise_floor(args.noise_floor), alpha=args.alpha,
                                   normalize=args.normalize, aggregate=args.aggregate)
        mismatch = gating.check_environments(read_environment(run_folders(args.baseline)[0]),
                                             read_environment(run_folders(args.current)[0]))
        if mismatch and not args.allow_env_mismatch:
            raise gating.GateInputError("the environments differ (" + "; ".join(mismatch)
                                        + "); pass --allow-env-mismatch to compare anyway")
        verdict = gating.gate(baseline, current, config)
    except (ResultsError, gating.GateInputError) as exc:
        print(f"gate: unusable input: {exc}", file=sys.stderr)
        return 2
    if mismatch:
        verdict["notes"].insert(0, "Environments differ: " + "; ".join(mismatch))
    text = markdown(verdict)
    out_dir = args.output or (args.current if args.current.is_dir() else args.current.parent)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / GATE_MD).write_text(text, encoding="utf-8")
    document = dict(to_json(verdict), elapsed_s=time.perf_counter() - started,
                    baseline=str(args.baseline), current=str(args.current))
    (out_dir / GATE_JSON).write_text(json.dumps(document, indent=2), encoding="utf-8")
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
    args.output.write_text(json.dumps(dict(runs=[str(run) for run in args.runs], noise_floor=floors),
                                      indent=2), encoding="utf-8")
    worst = max(floors.items(), key=lambda kv: kv[1])
    print(f"noise floor of {len(floors)} cases written to {args.output} "
          f"(largest: {worst[0]} {100 * worst[1]:.1f}%)")
    return 0
