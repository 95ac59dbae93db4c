"""Tables from the tidy results DataFrame. Pure functions: DataFrame in, DataFrame out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.cases import CASE_FIELDS, DEVICES, MODES, PHASES
from bench.faults import Status

from ..schema import View, get, names

PHASE_ORDER = list(PHASES)
TRACE = "trace_dir"  # the case's profiler trace folder, when --profile made one


def ok(df: pd.DataFrame) -> pd.DataFrame:
    """Measured cases only (skipped and failed cases carry no timing)."""
    return df[df["status"] == Status.OK.value]


def table_figures() -> list[str]:
    """The figures of the per-phase tables: those declared for the table view, the timing
    pass's first (the statistics derived from its rounds may be declared before it)."""
    return sorted(names(View.TABLE), key=lambda n: get(n).source != "timing")


def phase_table(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    """The measured cases of one phase, in matrix order: the case fields, the table figures
    and the trace folder."""
    rows = matrix_order(ok(df)[ok(df)["phase"] == phase])
    wanted = ["case_id", *CASE_FIELDS, *table_figures(), TRACE]
    return rows[[c for c in dict.fromkeys(wanted) if c in rows]].reset_index(drop=True)


def _speedup(df: pd.DataFrame, axis: str, before: str, after: str) -> pd.DataFrame:
    """Pivot median time on ``axis`` and add ``speedup = before / after`` where both exist."""
    keys = [c for c in CASE_FIELDS if c != axis]
    rows = ok(df)
    rows = rows[rows[axis].isin([before, after])]
    empty = pd.DataFrame(columns=[*keys, f"{before}_s", f"{after}_s", "speedup"])
    if rows.empty:
        return empty
    # "optimizer" is None for optimizer-free phases; pivot_table would drop those rows.
    rows = rows.assign(optimizer=rows["optimizer"].fillna("-"))
    wide = rows.pivot_table(index=keys, columns=axis, values="median_s", aggfunc="median")
    if before not in wide or after not in wide:
        return empty
    wide = wide[[before, after]].dropna()
    wide.columns = [f"{before}_s", f"{after}_s"]
    wide["speedup"] = wide[f"{before}_s"] / wide[f"{after}_s"]
    out = wide.reset_index()
    out["optimizer"] = out["optimizer"].replace("-", np.nan)
    return out


def compile_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """eager -> compile: ``speedup`` > 1 means torch.compile is faster."""
    return _speedup(df, "mode", "eager", "compile")


def device_speedup(df: pd.DataFrame) -> pd.DataFrame:
    """cpu -> cuda: ``speedup`` > 1 means the GPU is faster."""
    return _speedup(df, "device", "cpu", "cuda")


def compile_table(df: pd.DataFrame) -> pd.DataFrame:
    """Compiled, measured cases: compile time and every figure the compile pass declares
    for a detail view (graphs, graph breaks and their reasons, recompiles)."""
    measured = df["status"].map(lambda s: s in {st.value for st in Status if st.measured})
    compiled = df[(df["mode"] == "compile") & measured]
    detail = [n for n in names(View.DETAIL, source="compile") if n in compiled]
    if compiled.empty or not detail:
        return pd.DataFrame()
    return compiled[["case_id", "compile_time_s", *detail]].reset_index(drop=True)


def not_measured(df: pd.DataFrame) -> pd.DataFrame:
    """Skipped, failed and invalid cases with the reason (last line of the error)."""
    rows = df[df["status"] != Status.OK.value]
    reason = rows["error"].where(rows["error"].notna(), rows.get("invalid_reason"))
    return pd.DataFrame({"case_id": rows["case_id"], "status": rows["status"],
                         "reason": reason.fillna("").map(summary_line)}).reset_index(drop=True)


def summary_line(text: object, limit: int = 200) -> str:
    """The headline of a message: its first line, and the next when the first ends in ':'."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if not lines:
        return ""
    head = lines[0] + (" " + lines[1] if lines[0].endswith(":") and len(lines) > 1 else "")
    return head[:limit]


def matrix_order(df: pd.DataFrame, first: list[str] | None = None) -> pd.DataFrame:
    """Rows in the order the suite runs them (phase, model, optimizer, device, mode, …),
    after the ``first`` columns (e.g. ``["run"]``)."""
    ranks = {"phase": PHASE_ORDER, "device": list(DEVICES), "mode": list(MODES)}
    keys = {f"_{k}": df[k].map({v: i for i, v in enumerate(order)}) for k, order in ranks.items()}
    rest = [f"_{f}" if f in ranks else f for f in CASE_FIELDS]
    order = [*(first or []), "_phase", *(k for k in rest if k != "_phase")]
    return (df.assign(**keys).sort_values(order, na_position="first", kind="stable")
            .drop(columns=list(keys)).reset_index(drop=True))


def present(df: pd.DataFrame, column: str) -> bool:
    """Whether a column exists and holds at least one value (figures from newer runs)."""
    return column in df.columns and df[column].notna().any()
