"""``python -m reports merge RUN... --output DIR [--history-db DB]``: the run folders of the
shards of one run (``--shard i/N`` on N machines) joined into one run folder, with one report
and, given ``--history-db``, one history entry.

The merged folder holds what a run folder holds: every shard's result rows (``cases.jsonl``,
and ``benchmark.json`` where the shards wrote one), one ``environment.json``, the figures the
shards declared, their profiler rows and trace folders; the report is written anew. The shard
folders are only read. Refused with exit status 2, before anything is written: a folder that
is not a run, the same folder twice, shards that measured a case twice (overlapping parts, or
parts of different splits), an output folder that already holds a run, an unusable history.

The environment: the shards' fields, compared. A field that differs where it should not (the
torch version, the CPU…) is named in a warning and kept in the merged ``environment.json``
with each shard's value (``environment_differences``, and the field itself reads "A (run 1),
B (run 2)", so the report's environment table shows it). Fields expected to differ between
machines (which shard, when it started, the host, its load…) are kept per shard under
``shards``. Shards missing from a split (say 2 of 3 given) are named, not refused: what was
measured is never thrown away; the gate then lists the missing cases as lost.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from bench.schema.files import (BENCHMARK_JSON, CASES_FILE, ENVIRONMENT_FILE, FIGURES_FILE, GATE_JSON, GATE_MD,
                                ISOLATED_DIR, PROFILE_CSV, REPORT_CSV, REPORT_HTML, REPORT_MD, RUN_FILES)

from . import environment
from .environment import read_environment
from .history import HistoryError, append_run, check, describe
from .load import ResultsError, read_jsonl
from .run.write import write_report

# Per machine by nature: which shard, when and where it ran, how loaded the machine was, and
# readings that move with load (clocks, the measured matmul peak).
PER_SHARD = ("shard", "started_at", "hostname", "argv", "load_avg_1m", "cpu_peak_flops", "pid",
             "gpu_sm_clock_mhz", "gpu_mem_clock_mhz", "node_rank")
# Volatile between runs (reports.environment.VOLATILE), but one run's shards share them.
SAME_REVISION = ("git_commit", "git_dirty")
# Written from the rows, never copied: the reports and gate files; the per-case JSON of an
# --isolate run's children (their rows are in cases.jsonl and benchmark.json already).
REWRITTEN = frozenset({REPORT_MD, REPORT_CSV, REPORT_HTML, PROFILE_CSV, GATE_MD, GATE_JSON, ISOLATED_DIR,
                       CASES_FILE, BENCHMARK_JSON, ENVIRONMENT_FILE, FIGURES_FILE})
REFUSED = 2


class MergeError(ResultsError):
    """Shards that cannot be merged; the message names the folder or the cases and why."""


@dataclass
class Shard:
    folder: Path
    entries: list[dict[str, Any]]
    environment: dict[str, Any]
    case_ids: set[str] = field(default_factory=set)
    shown_as: str = ""  # the folder's name, or its path where two shards share a name

    @property
    def name(self) -> str:
        return self.shown_as or self.folder.name

    @property
    def label(self) -> str | None:
        value = self.environment.get("shard")
        return str(value) if value else None


@dataclass
class Merged:
    folder: Path
    cases: int
    differing: dict[str, dict[str, Any]]
    missing: list[str]
    skipped: list[str]
    paths: dict[str, Any] = field(default_factory=dict)
    history: str | None = None
    history_error: str | None = None

    def warnings(self) -> list[str]:
        lines = [f"the shards' environments differ in {key} ({_values(values)})"
                 for key, values in self.differing.items()]
        if self.missing:
            lines.append(f"shard{'s' if len(self.missing) > 1 else ''} {', '.join(self.missing)} not given: "
                         "the merged run lacks their cases")
        return lines + [f"skipped when reading: {message}" for message in self.skipped]


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{run}: {value}" for run, value in values.items())


# --- reading and checking ----------------------------------------------------------------


def read_shard(folder: Path, skipped: list[str]) -> Shard:
    """A shard's rows and environment; ``MergeError`` when the folder is not a run."""
    if not folder.is_dir():
        raise MergeError(f"{folder}: no such folder; give the run folders of the shards")
    if (folder / CASES_FILE).is_file():
        entries = read_jsonl(folder / CASES_FILE, skipped)
    elif (folder / BENCHMARK_JSON).is_file():
        entries = _benchmark_json(folder / BENCHMARK_JSON).get("benchmarks", [])
    else:
        raise MergeError(f"{folder}: not a run folder (no {' or '.join(RUN_FILES)}); give the run folders "
                         "that `nox -s bench -- --shard i/N --run-dir FOLDER` wrote")
    shard = Shard(folder, [e for e in entries if isinstance(e, dict)], read_environment(folder))
    shard.case_ids = {_case_id(e) for e in shard.entries}
    return shard


def read_shards(folders: Sequence[Path], skipped: list[str]) -> list[Shard]:
    """The shards, in shard order; one that holds no case (a machine stopped before its first
    case finished) is named in ``skipped`` and left out, unless all are empty."""
    shards = _order([read_shard(folder, skipped) for folder in folders])
    names = [s.folder.name for s in shards]
    for shard in shards:
        if names.count(shard.folder.name) > 1:
            shard.shown_as = str(shard.folder)
    empty = [s for s in shards if not s.case_ids]
    if len(empty) == len(shards):
        raise MergeError(f"no case in {', '.join(str(s.folder) for s in shards)}: nothing to merge")
    skipped += [f"{s.folder}{f' (shard {s.label})' if s.label else ''}: holds no case; merged without it"
                for s in empty]
    return [s for s in shards if s.case_ids]


def _benchmark_json(path: Path) -> dict[str, Any]:
    data = _json(path)
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise MergeError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return data


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MergeError(f"{path}: not valid JSON ({exc})") from None


def _case_id(entry: dict[str, Any]) -> str:
    return str((entry.get("extra_info") or {}).get("case_id") or entry.get("name"))


def check_shards(shards: Sequence[Shard]) -> list[str]:
    """Refuse shards that measured a case twice, or come from different splits; return the
    shards of the split that were not given (``["2/3"]``)."""
    seen: dict[str, Path] = {}
    for shard in shards:
        twice = sorted(i for i in shard.case_ids if i in seen)
        if twice:
            listed = ", ".join(twice[:5]) + (", …" if len(twice) > 5 else "")
            raise MergeError(f"{shard.folder} and {seen[twice[0]]} both hold {len(twice)} case(s) ({listed}): "
                             "shards of one run are disjoint; give each shard's folder once, all from one split")
        seen.update(dict.fromkeys(shard.case_ids, shard.folder))
    labelled = [s for s in shards if s.label]
    labels = {s.label for s in labelled}
    if len(labels) < len(labelled):
        again = next(s for s in labelled if [t.label for t in labelled].count(s.label) > 1)
        raise MergeError(f"two folders are shard {again.label}: "
                         + ", ".join(str(s.folder) for s in labelled if s.label == again.label)
                         + "; give each shard of one split once")
    counts = {label.partition("/")[2] for label in labels}
    if len(counts) > 1:
        raise MergeError("shards of different splits: " + ", ".join(f"{s.folder} is {s.label}" for s in shards)
                         + "; merge the shards of one split (all --shard i/N with the same N)")
    if not counts:
        return []
    total = int(counts.pop())
    return [f"{i}/{total}" for i in range(1, total + 1) if f"{i}/{total}" not in labels]


def _order(shards: Sequence[Shard]) -> list[Shard]:
    """By shard number where recorded, else as given: the merged rows read in one order."""
    def key(item: tuple[int, Shard]) -> tuple[int, int]:
        position, shard = item
        number = shard.label.partition("/")[0] if shard.label else ""
        return (int(number) if number.isdigit() else 0, position)
    return [shard for _, shard in sorted(enumerate(shards), key=key)]


def _check_output(output: Path, shards: Sequence[Shard]) -> None:
    if output.exists() and not output.is_dir():
        raise MergeError(f"--output {output}: is a file; give a new or empty folder")
    if output.resolve() in {s.folder.resolve() for s in shards}:
        raise MergeError(f"--output {output}: is one of the shards; give a new or empty folder")
    if output.is_dir() and any(output.iterdir()):
        raise MergeError(f"--output {output}: not empty; give a new or empty folder (a merge never "
                         "writes over results)")


# --- the environment -----------------------------------------------------------------------


def differing_fields(shards: Sequence[Shard]) -> dict[str, dict[str, Any]]:
    """{field: {run: value}} for the fields (other than PER_SHARD) whose values differ."""
    own = {s.name: {k: v for k, v in s.environment.items() if k not in PER_SHARD} for s in shards}
    differing = environment.differing_fields(own)
    recorded = {name: env for name, env in own.items() if env}
    for key in SAME_REVISION:  # runs may differ in these; the shards of one run may not
        values = {name: env.get(key) for name, env in recorded.items()}
        if len({json.dumps(v, default=str) for v in values.values()}) > 1:
            differing[key] = values
    return differing


def merged_environment(shards: Sequence[Shard], differing: dict[str, dict[str, Any]],
                       missing: list[str]) -> dict[str, Any]:
    """One environment for the merged run: the fields the shards agree on; each differing one
    as every shard's value; the earliest start (the history orders runs by it), the highest
    load (the report warns of a busy machine); each shard's own fields under ``shards``."""
    recorded = [s.environment for s in shards if s.environment]
    env: dict[str, Any] = dict(recorded[0]) if recorded else {}
    env.pop("shard", None)
    for key, values in differing.items():
        env[key] = ", ".join(f"{value} ({run})" for run, value in values.items())
    starts = [str(e["started_at"]) for e in recorded if e.get("started_at")]
    if starts:
        env["started_at"] = min(starts)
    loads = [e["load_avg_1m"] for e in recorded if isinstance(e.get("load_avg_1m"), (int, float))]
    if loads:
        env["load_avg_1m"] = max(loads)
    hosts = list(dict.fromkeys(str(e["hostname"]) for e in recorded if e.get("hostname")))
    if hosts:
        env["hostname"] = ", ".join(hosts)
    env["shards"] = [dict({k: s.environment.get(k) for k in PER_SHARD if k in s.environment},
                          run=s.name, folder=str(s.folder.resolve()), cases=len(s.case_ids)) for s in shards]
    env["environment_differences"] = differing
    env["shards_missing"] = missing
    return env


# --- writing -------------------------------------------------------------------------------


def _write_rows(output: Path, shards: Sequence[Shard], env: dict[str, Any]) -> None:
    with (output / CASES_FILE).open("w", encoding="utf-8") as fh:
        for shard in shards:
            for entry in shard.entries:
                fh.write(json.dumps(entry, default=str, allow_nan=True) + "\n")
    tables = [_benchmark_json(s.folder / BENCHMARK_JSON) for s in shards if (s.folder / BENCHMARK_JSON).is_file()]
    if tables:  # pytest-benchmark's JSON: the first shard's header, every shard's benchmarks
        joined = dict(tables[0], benchmarks=[b for t in tables for b in t["benchmarks"]],
                      blitzbench_environment=env)
        (output / BENCHMARK_JSON).write_text(json.dumps(joined, indent=2, default=str), encoding="utf-8")
    (output / ENVIRONMENT_FILE).write_text(json.dumps(env, indent=2, default=str), encoding="utf-8")


def _write_figures(output: Path, shards: Sequence[Shard]) -> None:
    """The shards' figure declarations, each name once (the first shard's, in its order)."""
    declared: dict[str, Any] = {}
    for shard in shards:
        path = shard.folder / FIGURES_FILE
        try:
            items = _json(path) if path.is_file() else []
        except MergeError:
            continue  # the report reads the figures as this blitzbench declares them
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "name" in item:
                declared.setdefault(str(item["name"]), item)
    if declared:
        (output / FIGURES_FILE).write_text(json.dumps(list(declared.values()), indent=1), encoding="utf-8")


def _copy_rest(output: Path, shards: Sequence[Shard], skipped: list[str]) -> None:
    """Everything else a shard folder holds: JSON-lines files joined (profiler rows), folders
    merged (traces: one folder per case, so none collide), other files from the first shard
    that has them (a differing copy is named)."""
    for shard in shards:
        for item in sorted(shard.folder.iterdir()):
            target = output / item.name
            if item.name in REWRITTEN:
                continue
            if item.is_dir():
                shutil.copytree(item, target, dirs_exist_ok=True)
            elif item.suffix == ".jsonl":
                with target.open("a", encoding="utf-8") as fh:
                    for entry in read_jsonl(item, skipped):
                        fh.write(json.dumps(entry, default=str, allow_nan=True) + "\n")
            elif not target.exists():
                shutil.copy2(item, target)
            elif target.read_bytes() != item.read_bytes():
                skipped.append(f"{item}: differs from the first shard's {item.name}; kept the first shard's")


def merge(runs: Sequence[Path | str], output: Path | str, history_db: Path | str | None = None) -> Merged:
    """Join shard run folders into ``output``; write its report and, with ``history_db``, append
    it to the history. Raises ``ResultsError`` (``MergeError``, ``HistoryError``) before writing."""
    output = Path(output)
    folders = [Path(r) for r in runs]
    if not folders:
        raise MergeError("no run folder given; merge the folders of the shards of one run")
    twice = [f for i, f in enumerate(folders) if f.resolve() in {g.resolve() for g in folders[:i]}]
    if twice:
        raise MergeError(f"{twice[0]}: given twice; give each shard's folder once")
    skipped: list[str] = []
    shards = read_shards(folders, skipped)
    missing = check_shards(shards)
    _check_output(output, shards)
    if history_db is not None:
        check(history_db)  # an unusable history stops the merge before it writes anything
    differing = differing_fields(shards)
    env = merged_environment(shards, differing, missing)
    output.mkdir(parents=True, exist_ok=True)
    _write_rows(output, shards, env)
    _write_figures(output, shards)
    _copy_rest(output, shards, skipped)
    merged = Merged(output, sum(len(s.case_ids) for s in shards), differing, missing, skipped)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # what was skipped is named once, by the merge
        merged.paths = write_report(output)
    merged.skipped += [m for m in merged.paths.pop("skipped", []) if m not in skipped]
    if history_db is not None:
        try:
            count = append_run(output, history_db)
        except (HistoryError, OSError) as exc:  # checked before writing; it may have changed since
            merged.history_error = f"NOT appended: {exc}"
        else:
            merged.history = f"{describe(history_db)} (+{count} case{'' if count == 1 else 's'})"
    return merged


# --- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports merge", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="the run folders of the shards")
    parser.add_argument("--output", type=Path, required=True, metavar="DIR",
                        help="the merged run folder (new or empty): its results, report.md, report.html")
    parser.add_argument("--history-db", default=None, metavar="PATH|URL",
                        help="append the merged run to this history: a path, sqlite:///PATH, or "
                             "postgresql://USER@HOST/DB (default: not appended)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        merged = merge(args.runs, args.output, args.history_db)
    except (ResultsError, HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    for line in merged.warnings():
        print(f"warning: {line}", file=sys.stderr)
    print(f"merged: {len(args.runs)} shard folders, {merged.cases} cases -> {merged.folder}")
    for kind, path in merged.paths.items():
        print(f"{kind}: {path}")
    if merged.history:
        print(f"history: {merged.history}")
    if merged.history_error:  # the merged folder and its report are written all the same
        print(f"error: history: {merged.history_error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
