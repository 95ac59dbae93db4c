"""Profiler summaries in pandas: per case, the operators by self time and the calls per step.

``aggregate`` groups a profiling pass's events by name, as ``key_averages()`` does, over
the timed part only (``bench.profiling.flatten`` leaves the untimed setup out), and
divides by the number of profiled steps. The bench run writes one JSON line per profiled
case to ``profile.jsonl``; ``load_profile`` reads them back as one tidy DataFrame (a row
per case and operator), which the run report writes to ``profile.csv`` and summarizes in
its Profiles section (report.md and report.html). Pure functions: DataFrames in, DataFrames out, no formatting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from bench.files import PROFILE_CSV, PROFILE_FILE

from ..load import read_jsonl

__all__ = ["PROFILE_CSV", "PROFILE_FILE", "aggregate", "empty_profile", "step_counts", "record", "load_profile", "cases", "top_ops"]
EVENT_COLUMNS = ["name", "kind", "self_cpu_s", "self_device_s"]
OP_COLUMNS = ["name", "kind", "calls_per_step", "self_cpu_s", "self_device_s", "cpu_pct"]
CASE_COLUMNS = ["case_id", "device", "trace_dir", "steps"]


def aggregate(events: Iterable[Mapping[str, Any]], steps: int) -> pd.DataFrame:
    """One row per (name, kind): calls and self times per step, largest self CPU time first.

    ``cpu_pct`` is the share of the step's self CPU time, so a reader sees how much of
    the step the listed operators explain.
    """
    df = pd.DataFrame(list(events), columns=EVENT_COLUMNS)
    if df.empty:
        return pd.DataFrame(columns=OP_COLUMNS)
    grouped = df.groupby(["name", "kind"], as_index=False).agg(
        calls=("name", "size"), self_cpu_s=("self_cpu_s", "sum"),
        self_device_s=("self_device_s", "sum"))
    total_cpu = grouped["self_cpu_s"].sum()
    out = pd.DataFrame({
        "name": grouped["name"],
        "kind": grouped["kind"],
        "calls_per_step": grouped["calls"] / steps,
        "self_cpu_s": grouped["self_cpu_s"] / steps,
        "self_device_s": grouped["self_device_s"] / steps,
        "cpu_pct": 100 * grouped["self_cpu_s"] / total_cpu if total_cpu > 0 else 0.0,
    })
    return out.sort_values(["self_cpu_s", "name"], ascending=[False, True]).reset_index(drop=True)


def step_counts(ops: pd.DataFrame, device: str) -> dict[str, float | None]:
    """Operator calls and kernel launches per step (no launches to count on the CPU)."""
    per_kind = ops.groupby("kind")["calls_per_step"].sum() if not ops.empty else pd.Series(dtype=float)
    launches = float(per_kind.get("launch", 0.0)) if device == "cuda" else None
    return {"op_calls_per_step": float(per_kind.get("op", 0.0)), "kernel_launches_per_step": launches}


def record(case_id: str, device: str, trace_dir: str, steps: int, ops: pd.DataFrame) -> dict[str, Any]:
    """The JSON line that stores one case's summary in ``profile.jsonl``."""
    return {"case_id": case_id, "device": device, "trace_dir": trace_dir, "steps": steps,
            **step_counts(ops, device), "ops": ops[OP_COLUMNS].to_dict("records")}


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
