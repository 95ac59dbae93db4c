"""Profiler summaries in pandas: per case, the operators by self time and the calls per step.

The profiling pass (``bench.passes.profiling``) groups each case's events by name, over the timed
part only, per profiled step, and writes one JSON line per profiled
case to ``profile.jsonl``; ``load_profile`` reads them back as one tidy DataFrame (a row
per case and operator), which the run report writes to ``profile.csv`` and summarizes in
its Profiles section (report.md and report.html). Pure functions: DataFrames in, DataFrames out, no formatting.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.schema.files import PROFILE_FILE, TRACES_DIR
# The row format of profile.jsonl is the profiling pass's, which writes it.
from bench.passes.profiling import OP_COLUMNS, case_id_of_folder

from ..load import read_jsonl
from .files import TraceError

__all__ = ["empty_profile", "load_profile", "cases", "top_ops", "trace_folders"]
CASE_COLUMNS = ["case_id", "device", "trace_dir", "steps"]


PROFILE_COLUMNS = [*CASE_COLUMNS, "op_calls_per_step", "kernel_launches_per_step", *OP_COLUMNS]


def empty_profile() -> pd.DataFrame:
    """The profile of a run that was not profiled."""
    return pd.DataFrame(columns=PROFILE_COLUMNS)


def load_profile(run_dir: Path | str) -> pd.DataFrame:
    """A run's profile summaries, a row per case and operator; empty when nothing was profiled."""
    path = Path(run_dir) / PROFILE_FILE
    columns = PROFILE_COLUMNS
    if not path.is_file():
        return empty_profile()
    rows = []
    # Read like cases.jsonl: a last line cut short by a killed run is dropped, not fatal.
    for entry in read_jsonl(path):
        case = {k: entry.get(k) for k in columns if k not in OP_COLUMNS}
        rows += [{**case, **op} for op in entry.get("ops", [])] or [case]
    return pd.DataFrame(rows, columns=columns)


def cases(profile: pd.DataFrame) -> pd.DataFrame:
    """One row per profiled case: its counts per step and its trace folder."""
    keep = ["case_id", "op_calls_per_step", "kernel_launches_per_step", "trace_dir"]
    return profile[keep].drop_duplicates("case_id").reset_index(drop=True)


def top_ops(profile: pd.DataFrame, case_id: str, by: str = "self_cpu_s", n: int = 5) -> pd.DataFrame:
    """The ``n`` operators of one case with the largest ``by`` (``self_cpu_s``/``self_device_s``)."""
    ops = profile[(profile["case_id"] == case_id) & (profile["kind"] == "op")]
    ops = ops[ops[by] > 0]
    columns = ["name", "calls_per_step", "self_cpu_s", "cpu_pct"]
    if by == "self_device_s":
        columns = ["name", "calls_per_step", "self_device_s"]
    return ops.sort_values([by, "name"], ascending=[False, True]).head(n)[columns].reset_index(drop=True)


def trace_folders(run_dir: Path | str, profile: pd.DataFrame | None = None) -> dict[str, Path]:
    """Each profiled case's trace folder, by case id: as ``profile.jsonl`` records them, else
    the case folders under ``traces/``; an error naming the run when it has neither."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TraceError(f"{run_dir}: no such run folder")
    profile = load_profile(run_dir) if profile is None else profile
    if not profile.empty:
        summary = cases(profile)
        return {case_id: run_dir / folder for case_id, folder in zip(summary["case_id"], summary["trace_dir"])
                if isinstance(folder, str) and folder}
    traces = run_dir / TRACES_DIR
    found = {case_id_of_folder(p.name): p for p in sorted(traces.iterdir()) if p.is_dir()} if traces.is_dir() else {}
    if not found:
        raise TraceError(f"{run_dir}: no profiler traces (no {PROFILE_FILE} and no case folders in "
                         f"{TRACES_DIR}/); record some with `nox -s profile`")
    return found
