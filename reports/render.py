"""Rendering: the one place numbers become strings (CSV, Markdown), with units chosen here."""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Iterable

import pandas as pd

from . import tables
from .load import load
from .tables import PHASE_ORDER

TIME_UNITS = [("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)]
BYTE_UNITS = [("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10), ("B", 1.0)]
FLOPS_UNITS = [("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6), ("FLOP/s", 1.0)]


def time_unit(seconds: Iterable[float]) -> tuple[str, float]:
    """One unit for a whole column, picked from its median, so values compare at a glance."""
    return pick_unit(seconds, TIME_UNITS)


def pick_unit(values: Iterable[float], units: list[tuple[str, float]]) -> tuple[str, float]:
    """The largest of ``units`` (largest first) that the median of ``values`` reaches."""
    values = [abs(v) for v in values if v is not None and not _isnan(v) and v != 0]
    if not values:
        return units[0]
    typical = sorted(values)[len(values) // 2]
    for unit, scale in units:
        if typical >= scale:
            return unit, scale
    return units[-1]


def scaled(values: Iterable[float], units: list[tuple[str, float]]) -> tuple[str, list[str]]:
    """A column of numbers as strings in one unit (picked by ``pick_unit``): ``(unit, strings)``."""
    values = list(values)
    unit, scale = pick_unit(values, units)
    return unit, [_fmt(float(v) / scale) if isinstance(v, numbers.Real) else _fmt(v) for v in values]


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def signed_percent(value: float) -> str:
    if value is None or _isnan(value):
        return "–"
    return "0.0%" if abs(value) < 0.0005 else f"{value:+.1%}"  # never "-0.0%"


def time_with_ci(median_s: Iterable[float], low_s: Iterable[float],
                 high_s: Iterable[float]) -> tuple[str, list[str], list[str]]:
    """Medians and their ``low – high`` intervals as strings in the medians' unit."""
    median_s = list(median_s)
    unit, scale = time_unit(median_s)
    _, medians = scaled(median_s, [(unit, scale)])
    _, lows = scaled(low_s, [(unit, scale)])
    _, highs = scaled(high_s, [(unit, scale)])
    return unit, medians, [f"{lo} – {hi}" for lo, hi in zip(lows, highs)]


def speedup_label(value: float) -> str:
    """A speedup short enough for a heatmap cell: ``1.51×``, ``12×``."""
    return f"{value:.0f}×" if value >= 9.95 else f"{value:.2f}×"


def _isnan(value: object) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None or _isnan(value):
        return "–"
    if isinstance(value, float):
        # Below 100, significant digits; above, whole numbers (never 2e+03).
        return f"{value:.{digits}g}" if abs(value) < 100 else f"{value:,.0f}"
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
    """Load a run folder and write ``report.md``, ``report.csv`` and ``report.html`` into it."""
    run_dir = Path(run_dir)
    df = load(run_dir)
    md_path = run_dir / "report.md"
    csv_path = run_dir / "report.csv"
    md_path.write_text(markdown(df, title=f"blitzbench report — {run_dir.name}"), encoding="utf-8")
    df.drop(columns=["times_s"]).to_csv(csv_path, index=False)
    from .html import write_html  # html builds on this module

    return {"markdown": md_path, "csv": csv_path, "html": write_html(run_dir, df)}


# --- history (``python -m reports --history``) -------------------------------------------

SIGNIFICANCE = ("A change is marked where the 95% confidence intervals of the medians of a case's "
                "consecutive runs do not overlap and the median moved by at least {:.0%}.")


def history_markdown(title: str, changes: pd.DataFrame, latest: pd.DataFrame, runs: pd.DataFrame,
                     min_change: float) -> str:
    """The history as Markdown: significant changes, each case's latest median, the runs."""
    counts = ", ".join(count(n, noun) for n, noun in
                       ((len(runs), "run"), (len(latest), "case"), (len(changes), "significant change")))
    lines = [f"# {title}", "", f"{counts}. " + SIGNIFICANCE.format(min_change), ""]
    if not changes.empty:
        shown = changes.assign(change=changes["change"].map(signed_percent))
        lines += ["## Significant changes", "", humanize(shown).to_markdown(index=False), ""]
    unit, medians, cis = time_with_ci(latest["median_s"], latest["ci_low_s"], latest["ci_high_s"])
    view = pd.DataFrame({"case_id": latest["case_id"], "runs": latest["runs"],
                         f"median ({unit})": medians, f"95% CI ({unit})": cis,
                         "vs previous run": latest["change"].map(signed_percent),
                         "significant": latest["flag"]})
    lines += ["## Latest run of each case", "", view.to_markdown(index=False), "",
              "## Runs", "", humanize(runs).to_markdown(index=False), ""]
    return "\n".join(lines)
