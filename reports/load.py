"""Results files -> one tidy DataFrame: a row per case (per run), numbers in seconds."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .environment import EnvironmentMismatchWarning, describe_differences, differing_fields, read_environment

CASE_COLUMNS = ["phase", "model", "optimizer", "device", "mode", "dtype", "batch_size"]
# pytest-benchmark stats (seconds per iteration) -> our column names.
STAT_COLUMNS = {
    "median": "median_s", "mean": "mean_s", "min": "min_s", "max": "max_s",
    "stddev": "stddev_s", "iqr": "iqr_s", "q1": "q1_s", "q3": "q3_s", "total": "total_s",
    "rounds": "rounds", "iterations": "iterations", "ops": "ops",
}
REQUIRED_STATS = ["median", "min", "max", "rounds"]  # what every report reads
# The figures the harness records in extra_info, in the order tables show them; any other
# extra_info key (added by a plugin, say) becomes a column too, after these.
EXTRA_COLUMNS = [
    "status", "error", "invalid_reason", "param_count", "first_call_s", "compile_time_s",
    "samples_per_s", "median_ci_low_s", "median_ci_high_s", "iqr_rel", "ci_rel_width", "noisy",
    "mem_param_bytes", "mem_held_bytes", "mem_peak_bytes", "cuda_max_allocated_bytes",
    "cuda_max_reserved_bytes", "flops", "flops_per_s", "peak_flops_per_s", "peak_share",
    "peak_source", "graph_count", "graph_break_count", "graph_breaks", "recompiles",
    "recompile_reasons", "compile_backend", "torch_version", "num_threads", "load_avg_1m", "pid",
]
# Written by the --profile pass (bench/profile_plugin.py); empty for cases not profiled.
EXTRA_COLUMNS += ["trace_dir", "trace_bytes", "op_calls_per_step", "kernel_launches_per_step"]
CASES_FILE = "cases.jsonl"
BENCHMARK_JSON = "benchmark.json"
RUN_FILES = (CASES_FILE, BENCHMARK_JSON)  # either makes a folder a run folder


class ResultsError(ValueError):
    """A results file or folder that cannot be read; the message names it."""


def load(*paths: str | Path) -> pd.DataFrame:
    """Read run folders, pytest-benchmark JSON files or JSON-lines files into one DataFrame."""
    if not paths:
        raise ResultsError("no results path given")
    frames = [_load_one(Path(p)) for p in paths]
    df = pd.concat(frames, ignore_index=True)
    if df.empty:
        raise ResultsError(f"no results in {', '.join(map(str, paths))}")
    environments = {str(frame["run"].iloc[0]): read_environment(p) for frame, p in zip(frames, paths)
                    if not frame.empty}
    df.attrs["environments"] = environments
    differing = differing_fields(environments)
    if differing:
        warnings.warn(describe_differences(differing), EnvironmentMismatchWarning, stacklevel=2)
    return df


def _load_one(path: Path) -> pd.DataFrame:
    if path.is_dir():
        # The JSON lines hold every finished case, also of an interrupted run.
        for name in (CASES_FILE, BENCHMARK_JSON):
            if (path / name).is_file():
                return _load_one(path / name)
        raise ResultsError(f"{path}: no {CASES_FILE} or {BENCHMARK_JSON} in this folder")
    if not path.is_file():
        raise ResultsError(f"{path}: no such file or folder")
    entries = _read_jsonl(path) if path.suffix == ".jsonl" else _read_benchmark_json(path)
    run = path.parent.name if path.name in (CASES_FILE, BENCHMARK_JSON) else path.stem
    rows = [_row(entry, path, i) for i, entry in enumerate(entries)]
    extra_keys = [k for row in rows for k in row if k not in _columns()]
    df = pd.DataFrame(rows, columns=[*_columns(), *dict.fromkeys(extra_keys)])
    df["run"] = run
    df["source"] = str(path)
    # Latest row wins if a case was recorded twice in one file (a rerun appended to it).
    return df.drop_duplicates(subset=["case_id"], keep="last").reset_index(drop=True)


def _columns() -> list[str]:
    return ["case_id", *CASE_COLUMNS, *STAT_COLUMNS.values(), *EXTRA_COLUMNS, "times_s"]


def _read_benchmark_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ResultsError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return data["benchmarks"]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    entries = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break  # a last line cut short by a killed run: everything before it is intact
            raise ResultsError(f"{path}:{number}: not valid JSON ({exc})") from None
    return entries


def _row(entry: Any, path: Path, index: int) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ResultsError(f"{path}: benchmark #{index} is not an object")
    extra = entry.get("extra_info") or {}
    missing = [c for c in ("case_id", *CASE_COLUMNS) if c not in extra]
    if missing:
        name = entry.get("name", f"#{index}")
        raise ResultsError(
            f"{path}: benchmark {name} lacks the case fields {', '.join(missing)}"
            " (not written by blitzbench?)"
        )
    row: dict[str, Any] = {c: extra.get(c) for c in ("case_id", *CASE_COLUMNS, *EXTRA_COLUMNS)}
    row.update({k: v for k, v in extra.items() if k not in row})
    stats = entry.get("stats") or {}
    lacking = [k for k in REQUIRED_STATS if stats and k not in stats]
    if lacking:
        raise ResultsError(
            f"{path}: benchmark {extra['case_id']} lacks the statistics {', '.join(lacking)}"
            f" (expected pytest-benchmark stats: {', '.join(STAT_COLUMNS)})"
        )
    for key, column in STAT_COLUMNS.items():
        value = stats.get(key)
        row[column] = np.nan if value is None else value
    row["times_s"] = list(stats.get("data") or [])
    row["status"] = row["status"] or ("ok" if stats else "error")
    return row
