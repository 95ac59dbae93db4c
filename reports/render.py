"""Rendering: the one place numbers become strings (CSV, Markdown), with units chosen here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from . import profile as profiles
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
        "trace": table["trace_dir"].map(_trace_link),
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
    profile = profiles.load_profile(run_dir)
    text = markdown(df, title=f"blitzbench report — {run_dir.name}") + profiles_markdown(profile)
    md_path.write_text(text, encoding="utf-8")
    df.drop(columns=["times_s"]).to_csv(csv_path, index=False)
    paths = {"markdown": md_path, "csv": csv_path}
    if not profile.empty:
        paths["profile csv"] = run_dir / profiles.PROFILE_CSV
        profile.to_csv(paths["profile csv"], index=False)
    return paths


def _trace_link(trace_dir: object) -> str | None:
    """A Markdown link to a trace folder, relative to the report (both live in the run folder)."""
    return f"[trace]({trace_dir})" if isinstance(trace_dir, str) and trace_dir else None


# Report column names for the profile tables; ``_s`` columns get their unit from humanize.
_PROFILE_NAMES = {"name": "operator", "calls_per_step": "calls/step", "self_cpu_s": "self CPU_s",
                  "self_device_s": "self device_s", "cpu_pct": "CPU %",
                  "op_calls_per_step": "op calls/step",
                  "kernel_launches_per_step": "kernel launches/step", "trace_dir": "trace"}


def profiles_markdown(profile: pd.DataFrame, top: int = 5) -> str:
    """The "Profiles" section: counts per step per case, then each case's top operators."""
    if profile.empty:
        return ""
    summary = profiles.cases(profile)
    summary = summary.assign(trace_dir=summary["trace_dir"].map(
        lambda d: f"[{d}]({d})" if isinstance(d, str) else None))
    summary = summary.dropna(axis="columns", how="all").rename(columns=_PROFILE_NAMES)
    steps = ", ".join(str(int(n)) for n in sorted(profile["steps"].dropna().unique()))
    lines = ["", "## Profiles", "",
             f"Per step, averaged over the {steps} profiled steps of each case, counting the timed "
             "part only (the untimed setup of `backward` is in the trace, marked, but not counted). "
             "Times are self times. Open a trace with `nox -s tensorboard` or in Perfetto.", "",
             humanize(summary).to_markdown(index=False), ""]
    for case_id in summary["case_id"]:
        lines += [f"### {case_id}", ""]
        for by, what in (("self_cpu_s", "CPU"), ("self_device_s", "device")):
            ops = profiles.top_ops(profile, case_id, by=by, n=top)
            if not ops.empty:
                lines += [f"Top operators by self {what} time:", "",
                          _markdown_table(ops.rename(columns=_PROFILE_NAMES)), ""]
    return "\n".join(lines)
