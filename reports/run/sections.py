"""The run report's sections, built once and written as Markdown and as HTML.

Summary, environment, a section per phase (table and charts), speedups, memory, FLOP/s,
compile behaviour, profiles and the cases not measured. Every number becomes a string
through ``reports.format``; the figures shown come from their declarations.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from bench.faults import Status

from .. import format as fmt
from ..environment import SHOWN_FIELDS, busy_runs
from ..schema import Kind, View, figures, get
from ..traces import profile as profiles
from . import plots, tables
from .document import Cards, Charts, Note, Section, Table

FOLD_AFTER = 2  # charts; a longer run of distribution charts starts folded
TIMES_NOTE = ("Times are medians per call with the 95% confidence interval of the median; IQR is the "
              "interquartile range as a share of the median; held is what a step keeps between "
              "steps, peak the most live tensor memory during one.")


def run_sections(df: pd.DataFrame, profile: pd.DataFrame, run_dir: Path | None = None) -> list[Section]:
    measured = tables.ok(df)
    environments = df.attrs.get("environments", {})
    sections = [summary_section(df), environment_section(environments, measured)]
    phases = [p for p in tables.PHASE_ORDER if (measured["phase"] == p).any()]
    sections += [phase_section(df, phase, run_dir) for phase in phases]
    sections += [s for s in (speedup_section(df), memory_section(df, phases),
                             chart_section("flops", "FLOP/s", plots.flops_bars, df, phases),
                             compile_section(df), profiles_section(profile, run_dir), not_measured_section(df))
                 if s is not None]
    return sections


def summary_section(df: pd.DataFrame) -> Section:
    measured = tables.ok(df)
    runs = ", ".join(sorted(df["run"].astype(str).unique()))
    noisy = int(measured["noisy"].eq(True).sum()) if "noisy" in measured else 0
    cards = [(len(measured), "cases measured")]
    cards += [(int(n), str(status)) for status, n in df["status"].value_counts().items() if status != Status.OK.value]
    cards += [(measured["phase"].nunique(), "phases"), (noisy, "noisy cases")]
    text = (f"Run {runs}: {len(measured)} cases measured, {len(df) - len(measured)} not measured or invalid, "
            f"{noisy} noisy. " + (TIMES_NOTE if not measured.empty else "No case was measured."))
    blocks: list[Any] = [Cards(cards), Note(text)]
    for run, load, cores in busy_runs(df.attrs.get("environments", {})):
        blocks.append(Note(f"run {run} started with a load average of {fmt.decimal(load)} on {cores} cores; other "
                           "processes compete with torch's threads and can inflate times many-fold. Each "
                           "case's load_avg_1m is in the CSV.", warning=True))
    return Section("summary", "Summary", blocks)


def environment_section(environments: Mapping[str, Mapping[str, Any]], measured: pd.DataFrame) -> Section:
    """Key environment fields, one column per run; for a run without environment.json, what
    its cases recorded."""
    runs = {run: dict(env) for run, env in environments.items() if env}
    blocks: list[Any] = []
    if not runs:
        env: dict[str, Any] = {}
        for key, column in (("torch_version", "torch_version"), ("torch_num_threads", "num_threads")):
            if column in measured and not measured[column].dropna().empty:
                env[key] = ", ".join(fmt.number(v) for v in sorted(measured[column].dropna().unique()))
        runs = {", ".join(sorted(measured["run"].astype(str).unique())) or "this run": env}
        blocks.append(Note("This run has no environment.json; shown: what its cases recorded."))
    rows = [[label, *(fmt.environment_value(key, env.get(key)) for env in runs.values())]
            for key, label in SHOWN_FIELDS if any(env.get(key) is not None for env in runs.values())]
    blocks.insert(0, Table(pd.DataFrame(rows, columns=["", *runs])))
    return Section("environment", "Environment", blocks)


def phase_view(table: pd.DataFrame) -> pd.DataFrame:
    """What a reader needs per case, as strings: the table figures with units, flags (the
    declared flags that are set) in one column; columns with nothing in them left out."""
    flags = [f.name for f in figures(View.TABLE) if f.kind is Kind.FLAG and f.name in table]
    numbers = table[[c for c in ("case_id", *tables.table_figures()) if c in table and c not in flags]]
    shown = fmt.humanize(numbers.dropna(axis="columns", how="all"))
    shown["flags"] = [" ".join(get(f).label for f in flags if row[f] is True or row[f] == 1)
                      for _, row in table.iterrows()]
    return shown.loc[:, [c for c in shown.columns if (shown[c] != fmt.MISSING).any() and (shown[c] != "").any()]]


def phase_section(df: pd.DataFrame, phase: str, run_dir: Path | None) -> Section:
    table = tables.phase_table(df, phase)
    view = phase_view(table)
    links = {}
    if tables.present(table, tables.TRACE):
        view["trace"] = ["trace" if isinstance(d, str) and d else "" for d in table[tables.TRACE]]
        links["trace"] = [trace_href(d, run_dir) for d in table[tables.TRACE]]
    numeric = [c for c in view.columns if c not in ("case_id", "flags", "trace")]
    badges = {"flags": view["flags"].tolist()} if "flags" in view else {}
    boxes = plots.round_time_boxes(df, phase)
    folded = len(boxes) > FOLD_AFTER  # the full matrix: the medians in view, distributions a click away
    return Section(f"phase-{phase}", phase, [
        Table(view, numeric=numeric, links=links, badges=badges),
        Charts(plots.phase_bars(df, phase)),
        Charts(boxes, title=f"Distribution of round times ({len(boxes)} charts)" if folded
               else "Distribution of round times", folded=folded,
               note="Each round times one or more calls; a wide box or far outliers mean a noisy measurement."),
    ])


def trace_href(trace_dir: object, run_dir: Path | None) -> str | None:
    """A link to a trace folder, relative to the report when it lies beside it."""
    if not isinstance(trace_dir, str) or not trace_dir:
        return None
    path = Path(trace_dir)
    if not path.is_absolute():
        if run_dir is None or (run_dir / path).exists() or not path.exists():
            return path.as_posix()  # already relative to the run folder
        path = path.resolve()  # relative to the working directory
    if run_dir is not None:
        try:
            return Path(os.path.relpath(path, run_dir.resolve())).as_posix()
        except ValueError:  # another drive on Windows
            pass
    return path.as_uri()


def speedup_section(df: pd.DataFrame) -> Section | None:
    blocks: list[Any] = []
    for title, table in (("eager → compile speedup", tables.compile_speedup(df)),
                         ("CPU → CUDA speedup", tables.device_speedup(df))):
        if not table.empty:
            shown = fmt.humanize(table)
            blocks.append(Table(shown, title=title, numeric=[c for c in shown.columns if c.endswith(")") or c == "speedup"]))
    if not blocks:
        return None
    charts = plots.speedup_heatmaps(df)
    return Section("speedups", "Speedups", [Note("Median time before ÷ after, for cases measured both ways."),
                                            *blocks, Charts(charts)])


def chart_section(sid: str, title: str, make, df: pd.DataFrame, phases: list[str]) -> Section | None:
    charts = [c for p in phases for c in make(df, p)]
    return Section(sid, title, [Charts(charts)]) if charts else None


def memory_section(df: pd.DataFrame, phases: list[str]) -> Section | None:
    """Every memory figure the run recorded, per measured case (the tables show peak only),
    and a chart per phase."""
    measured = tables.matrix_order(tables.ok(df))
    recorded = [f.name for f in figures(source="memory") if f.kind is Kind.BYTES and tables.present(measured, f.name)]
    charts = [c for p in phases for c in plots.memory_bars(df, p)]
    if not recorded and not charts:
        return None
    blocks: list[Any] = []
    if recorded:
        shown = fmt.humanize(measured[["case_id", *recorded]])
        blocks.append(Table(shown, numeric=[c for c in shown.columns if c != "case_id"]))
    return Section("memory", "Memory", [*blocks, Charts(charts)])


def compile_section(df: pd.DataFrame) -> Section | None:
    table = tables.compile_table(df)
    if table.empty:
        return None
    shown = fmt.humanize(table)
    text = [get(c).label for c in table.columns if get(c) is not None and get(c).kind is Kind.TEXT]
    return Section("compile", "Compile behaviour",
                   [Table(shown, numeric=[c for c in shown.columns if c != "case_id" and c not in text])])


# Report names for the profile's operator columns; ``_s`` columns get their unit from format.
OP_NAMES = {"name": "operator", "calls_per_step": "calls/step", "self_cpu_s": "self CPU_s",
            "self_device_s": "self device_s", "cpu_pct": "CPU %"}


def profiles_section(profile: pd.DataFrame, run_dir: Path | None, top: int = 5) -> Section | None:
    """Per profiled case: operator calls and kernel launches per step, then its top operators."""
    if profile.empty:
        return None
    summary = profiles.cases(profile)
    counts = [n for n in (f.name for f in figures(View.DETAIL, source="profile")) if n in summary]
    shown = fmt.humanize(summary[["case_id", *counts]].dropna(axis="columns", how="all"))
    links = {}
    if tables.present(summary, tables.TRACE):
        shown["trace"] = [d if isinstance(d, str) else "" for d in summary[tables.TRACE]]
        links["trace"] = [trace_href(d, run_dir) for d in summary[tables.TRACE]]
    steps = ", ".join(str(int(n)) for n in sorted(profile["steps"].dropna().unique()))
    blocks: list[Any] = [
        Note(f"Per step, averaged over the {steps} profiled steps of each case, counting the timed part "
             "only (the untimed setup of `backward` is in the trace, marked, but not counted). Times are "
             "self times. Open a trace with `nox -s tensorboard` or in Perfetto."),
        Table(shown, numeric=[c for c in shown.columns if c not in ("case_id", "trace")], links=links)]
    for case_id in summary["case_id"]:
        for by, what in (("self_cpu_s", "CPU"), ("self_device_s", "device")):
            ops = profiles.top_ops(profile, case_id, by=by, n=top)
            if not ops.empty:
                ops_shown = fmt.humanize(ops.rename(columns=OP_NAMES))
                blocks.append(Table(ops_shown, title=f"{case_id}: top operators by self {what} time",
                                    numeric=[c for c in ops_shown.columns if c != "operator"]))
    return Section("profiles", "Profiles", blocks)


def not_measured_section(df: pd.DataFrame) -> Section | None:
    missing = tables.not_measured(df)
    if missing.empty:
        return None
    view = pd.DataFrame({"case": missing["case_id"], "status": missing["status"], "reason": missing["reason"]})
    return Section("not-measured", "Not measured or invalid",
                   [Table(view, badges={"status": missing["status"].tolist()})])
