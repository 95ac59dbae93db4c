"""Rendering: the one place numbers become strings (CSV, Markdown), with units chosen here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from . import tables
from .load import load

TIME_UNITS = [("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)]
PHASE_ORDER = ["forward", "backward", "optimizer_step", "train_step"]


def time_unit(seconds: Iterable[float]) -> tuple[str, float]:
    """One unit for a whole column, picked from its median, so values compare at a glance."""
    values = [abs(v) for v in seconds if v is not None and not _isnan(v) and v != 0]
    if not values:
        return "s", 1.0
    typical = sorted(values)[len(values) // 2]
    for unit, scale in TIME_UNITS:
        if typical >= scale:
            return unit, scale
    return TIME_UNITS[-1]


def _isnan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or _isnan(value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def humanize(df: pd.DataFrame) -> pd.DataFrame:
    """Columns ending in ``_s`` become one-unit time strings; other numbers get short forms."""
    out = pd.DataFrame(index=df.index)
    for column in df.columns:
        values = df[column]
        if column.endswith("_s") and column not in ("samples_per_s",):
            unit, scale = time_unit(values)
            name = column[:-2] + f" ({unit})"
            out[name] = [_fmt(v / scale if isinstance(v, (int, float)) else v) for v in values]
        elif column == "samples_per_s":
            out["samples/s"] = [_fmt(float(v)) if v is not None else "–" for v in values]
        elif column == "iqr_pct":
            out["IQR"] = [f"{v:.1f}%" if not _isnan(v) else "–" for v in values]
        elif column == "speedup":
            out["speedup"] = [f"{v:.2f}×" for v in values]
        else:
            out[column] = [_fmt(v) for v in values]
    return out


def _markdown_table(df: pd.DataFrame) -> str:
    return humanize(df).to_markdown(index=False)


def _phase_view(table: pd.DataFrame) -> pd.DataFrame:
    """What a reader needs per case; columns with nothing in them are left out."""
    view = pd.DataFrame({
        "case_id": table["case_id"],
        "median_s": table["median_s"],
        "iqr_pct": 100 * table["iqr_s"] / table["median_s"],
        "rounds": table["rounds"],
        "samples_per_s": table["samples_per_s"],
        "compile_time_s": table["compile_time_s"],
    })
    return view.dropna(axis="columns", how="all")


def markdown(df: pd.DataFrame, title: str = "blitzbench report") -> str:
    """The Markdown report: a summary line, a table per phase, speedups, unmeasured cases."""
    measured = tables.ok(df)
    runs = ", ".join(sorted(df["run"].astype(str).unique()))
    torch_versions = ", ".join(sorted(measured["torch_version"].dropna().astype(str).unique())) or "–"
    threads = ", ".join(str(int(t)) for t in sorted(measured["num_threads"].dropna().unique())) or "–"
    lines = [f"# {title}", "",
             f"Run {runs}: {len(measured)} cases measured, {len(df) - len(measured)} not measured; "
             f"torch {torch_versions}; CPU threads {threads}. Times are medians per call; "
             "IQR is the interquartile range as a share of the median.", ""]
    for phase in PHASE_ORDER:
        table = tables.phase_table(df, phase)
        if not table.empty:
            lines += [f"## {phase}", "", _markdown_table(_phase_view(table)), ""]
    for heading, table in (("eager → compile speedup", tables.compile_speedup(df)),
                           ("CPU → CUDA speedup", tables.device_speedup(df))):
        if not table.empty:
            lines += [f"## {heading}", "", _markdown_table(table), ""]
    missing = tables.not_measured(df)
    if not missing.empty:
        missing = missing.assign(error=missing["error"].fillna("").map(_first_line))
        lines += ["## Not measured", "", missing.to_markdown(index=False), ""]
    return "\n".join(lines)


def _first_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""


def write_report(run_dir: Path | str) -> dict[str, Path]:
    """Load a run folder and write ``report.md`` and ``report.csv`` into it."""
    run_dir = Path(run_dir)
    df = load(run_dir)
    md_path = run_dir / "report.md"
    csv_path = run_dir / "report.csv"
    md_path.write_text(markdown(df, title=f"blitzbench report — {run_dir.name}"), encoding="utf-8")
    df.drop(columns=["times_s"]).to_csv(csv_path, index=False)
    return {"markdown": md_path, "csv": csv_path}
