"""Tables from the tidy results DataFrame. Pure functions: DataFrame in, DataFrame out."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .load import CASE_COLUMNS

PHASE_ORDER = ["forward", "backward", "optimizer_step", "train_step"]
PHASE_COLUMNS = ["case_id", "model", "optimizer", "device", "mode", "dtype", "batch_size",
                 "median_s", "median_ci_low_s", "median_ci_high_s", "iqr_s", "iqr_rel", "noisy",
                 "rounds", "iterations", "samples_per_s", "mem_held_bytes", "mem_peak_bytes",
                 "flops", "flops_per_s", "peak_share", "compile_time_s"]
PHASE_COLUMNS += ["trace_dir"]  # the case's profiler trace folder, when --profile made one


def ok(df: pd.DataFrame) -> pd.DataFrame:
    """Measured cases only (skipped and failed cases carry no timing)."""
    return df[df["status"] == "ok"]


def phase_table(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    """The measured cases of one phase, in matrix order."""
    rows = ok(df)
    rows = rows[rows["phase"] == phase]
    keys = ["model", "optimizer", "device", "mode_order", "dtype", "batch_size"]
    columns = [c for c in PHASE_COLUMNS if c in rows]
    rows = rows.assign(mode_order=rows["mode"].map({"eager": 0, "compile": 1}))
    return rows.sort_values(keys, na_position="first")[columns].reset_index(drop=True)


def _speedup(df: pd.DataFrame, axis: str, before: str, after: str) -> pd.DataFrame:
    """Pivot median time on ``axis`` and add ``speedup = before / after`` where both exist."""
    keys = [c for c in CASE_COLUMNS if c != axis]
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


def not_measured(df: pd.DataFrame) -> pd.DataFrame:
    """Skipped, failed and invalid cases with the reason (last line of the error)."""
    rows = df[df["status"] != "ok"]
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
    ranks = {"phase": PHASE_ORDER, "device": ["cpu", "cuda"], "mode": ["eager", "compile"]}
    keys = {f"_{k}": df[k].map({v: i for i, v in enumerate(order)}) for k, order in ranks.items()}
    order = [*(first or []), "_phase", "model", "optimizer", "_device", "_mode", "dtype", "batch_size"]
    return (df.assign(**keys).sort_values(order, na_position="first", kind="stable")
            .drop(columns=list(keys)).reset_index(drop=True))
