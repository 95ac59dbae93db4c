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

from bench.schema.status import Status

from .. import format as fmt
from ..environment import SHOWN_FIELDS, SUMMARY_FIELDS, busy_runs
from ..schema import Kind, View, figures, get
from ..stats import NOISY_CI_HALF, NOISY_DRIFT, NOISY_RULE
from ..traces import TraceError
from ..traces import breakdown as step_breakdown
from ..traces import profile as profiles
from . import plots, tables
from .document import Cards, Charts, Note, Section, Table

FOLD_ROWS = 12  # a longer table starts folded in HTML (Markdown shows it)
TIMES_NOTE = ("Times are medians per call with the 95% confidence interval of the median; IQR is the "
              "interquartile range as a share of the median; held is what a step keeps between "
              "steps, peak the most live tensor memory during one.")
BREAKDOWN_PHASE = "train_step"  # the phase that holds every part of a step's memory: shown unfolded


def run_sections(df: pd.DataFrame, profile: pd.DataFrame, run_dir: Path | None = None) -> list[Section]:
    """At a glance first (trustworthy? fastest? what did a change buy? where does memory go?),
    then every case folded, then the details."""
    measured = tables.ok(df)
    environments = df.attrs.get("environments", {})
    phases = [p for p in tables.PHASE_ORDER if (tables.timed(df)["phase"] == p).any()]
    sections = [summary_section(df)]
    sections += [s for s in (fastest_section(df), speedup_section(df), pipeline_section(df),
                             breakdown_section(df, phases), counts_section(df)) if s is not None]
    sections += [phase_section(df, phase, run_dir) for phase in phases]
    sections.append(environment_section(environments, measured))
    sections += [s for s in (memory_section(df, phases),
                             chart_section("flops", "FLOP/s", plots.flops_bars, df, phases),
                             compile_section(df), profiles_section(profile, run_dir), not_measured_section(df))
                 if s is not None]
    return sections


def environment_line(environments: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The environment in one line (of each run that recorded one)."""
    labels = dict(SHOWN_FIELDS)
    lines = []
    for run, env in environments.items():
        parts = [f"{labels[k]} {fmt.environment_value(k, env[k])}" for k in SUMMARY_FIELDS if env.get(k) is not None]
        if parts:
            lines.append((f"{run}: " if len(environments) > 1 else "") + " · ".join(parts))
    return "; ".join(lines) or None


def summary_section(df: pd.DataFrame) -> Section:
    """Is this run trustworthy: a busy machine and anything skipped when reading first, then
    the counts and what noisy means."""
    measured = tables.ok(df)
    timed = tables.timed(df)
    environments = df.attrs.get("environments", {})
    runs = ", ".join(sorted(df["run"].astype(str).unique()))
    noisy = int(timed["noisy"].eq(True).sum()) if "noisy" in timed else 0
    blocks: list[Any] = []
    line = environment_line(environments)
    if line:
        blocks.append(Note(line))
    for run, load, cores in busy_runs(environments):
        blocks.append(Note(f"run {run} started with a load average of {fmt.decimal(load)} on {cores} cores; other "
                           "processes compete with torch's threads and can inflate times many-fold. Each "
                           "case's load_avg_1m is in the CSV.", warning=True))
    for message in df.attrs.get("skipped", []):
        blocks.append(Note(f"skipped when reading: {message}", warning=True))
    crowded = int(measured["oversubscribed"].eq(True).sum()) if "oversubscribed" in measured else 0
    if crowded:
        blocks.append(Note(f"{crowded} distributed case(s) ran oversubscribed (the ranks want more than "
                           "the host's cores): their times include waiting for a core.", warning=True))
    cards = [(len(measured), "cases measured")]
    cards += [(int(n), str(status)) for status, n in df["status"].value_counts().items() if status != Status.OK.value]
    cards += [(measured["phase"].nunique(), "phases"), (noisy, "noisy cases")]
    untimed = len(measured) - len(timed)
    text = (f"Run {runs}: {len(measured)} cases measured"
            + (f" ({untimed} counted, not timed)" if untimed else "")
            + f", {len(df) - len(measured)} not measured or invalid, {noisy} noisy. "
            + (TIMES_NOTE if not timed.empty else "No case was timed." if not measured.empty
               else "No case was measured."))
    blocks += [Cards(cards), Note(text)]
    if not timed.empty:
        blocks.append(Note(NOISY_RULE.format(ci=fmt.short_percent(NOISY_CI_HALF),
                                             drift=fmt.short_percent(NOISY_DRIFT))))
    return Section("summary", "Summary", blocks)


def fastest_section(df: pd.DataFrame) -> Section | None:
    """Which is fastest: per phase, the fastest cases ranked by median (HTML: a sorted bar
    chart, the ranked table folded; Markdown: the ranked table)."""
    rows = plots.ranked(df)
    if rows.empty:
        return None
    unit, medians, cis = fmt.time_with_ci(rows["median_s"], rows["ci_low_s"], rows["ci_high_s"])
    view = pd.DataFrame({"phase": rows["phase"], "rank": [fmt.number(r) for r in rows["rank"]],
                         "case": rows["case_id"], f"median ({unit})": medians, f"95% CI ({unit})": cis,
                         "vs fastest": [fmt.speedup(v) for v in rows["vs_fastest"]],
                         "noisy": ["noisy" if v is True else "" for v in rows["noisy"]]})
    return Section("fastest", "Fastest per phase", [
        Charts(plots.ranking_chart(df)),
        Note(f"The {fmt.number(plots.RANKED)} fastest cases of each phase by median time per call; "
             "every case is in the phase tables below."),
        Table(view, title="Ranked", numeric=["rank", f"median ({unit})", f"95% CI ({unit})", "vs fastest"],
              badges={"noisy": view["noisy"].tolist()}, group_by="phase", folded=True)])


def pipeline_section(df: pd.DataFrame) -> Section | None:
    """The seed's input pipeline: which data, where each model's loop spends its time, the
    fastest loader setting measured, images/s and data wait per setting."""
    rows = tables.pipeline(df)
    if rows.empty:
        return None
    blocks: list[Any] = [Note(f"Data: {source}.") for source in rows["data_source"].dropna().unique()]
    blocks += [Note(line) for line in pipeline_lines(df, rows)]
    wait, compute = (fmt.scaled(rows[c], fmt.TIME_UNITS) for c in ("data_wait_s", "compute_s"))
    view = pd.DataFrame({
        "case": rows["case_id"], "setting": rows["setting"],
        "images × batches": [f"{fmt.number(i)} × {fmt.number(b)}" for i, b in zip(rows["epoch_images"], rows["epoch_batches"])],
        "images/s": [fmt.number(v) for v in rows["samples_per_s"]],
        "data wait": [fmt.percent(v) for v in rows["data_wait_share"]],
        f"wait/step ({wait[0]})": wait[1], f"compute/step ({compute[0]})": compute[1],
        # What the seed prints after each epoch (the timed ones).
        "epoch losses": [" · ".join(f"Training loss: {fmt.number(v)}" for v in losses)
                         if isinstance(losses, list) else "" for losses in rows.get("epoch_losses", [None] * len(rows))],
    })
    blocks += [Charts(plots.pipeline_throughput(rows) + plots.pipeline_split(rows)),
               Table(view, numeric=["images/s", "data wait", f"wait/step ({wait[0]})",
                                    f"compute/step ({compute[0]})"], folded=len(view) > FOLD_ROWS)]
    return Section("pipeline", "The data pipeline", blocks)


def pipeline_lines(df: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """One line per model: where the seed's loop spends its time, the fastest loader setting
    measured, and the same model's train_step alone for scale."""
    lines = []
    steps = tables.timed(df)
    steps = steps[(steps["phase"] == "train_step") & (steps["mode"] == "eager")]
    for model, cases in rows.groupby("model", sort=False):
        epochs = cases[cases["phase"] == "epoch"]
        scope = epochs if not epochs.empty else cases
        seed = scope.iloc[0]  # matrix order: the seed's own settings come first
        best = scope.loc[scope["samples_per_s"].idxmax()]
        what = "the seed's loop" if not epochs.empty else "the DataLoader alone"
        text = (f"{model}: {what} runs at {fmt.number(seed['samples_per_s'])} images/s with {seed['setting']}"
                + (f", {fmt.percent(seed['data_wait_share'])} of it waiting for data" if not epochs.empty else "")
                + f"; fastest measured: {best['setting']} at {fmt.number(best['samples_per_s'])} images/s"
                + (f" ({fmt.speedup(best['samples_per_s'] / seed['samples_per_s'])})" if best.name != seed.name else ""))
        step = steps[steps["model"] == model]
        if not epochs.empty and not step.empty:
            alone = step["samples_per_s"].max()
            text += (f". Its train_step alone, on a made batch: {fmt.number(alone)} samples/s, "
                     f"{fmt.speedup(alone / best['samples_per_s'])} the loop's best")
        lines.append(text + ".")
    return lines


def breakdown_section(df: pd.DataFrame, phases: list[str]) -> Section | None:
    """Where memory goes: a stacked bar per case (train_step in view, the other phases folded)."""
    shown = [(p, plots.memory_breakdown(df, p)) for p in phases]
    shown = [(p, charts) for p, charts in shown if charts]
    if not shown:
        return None
    first = next((p for p, _ in shown if p == BREAKDOWN_PHASE), shown[0][0])
    shown.sort(key=lambda item: item[0] != first)  # the one in view first, the folded ones after
    blocks: list[Any] = []
    for phase, charts in shown:  # the chart to look at, its numbers beside it (Markdown has no chart)
        blocks += [Charts(charts, title=f"{phase}: where memory goes", folded=phase != first),
                   breakdown_table(df, phase)]
    parts = ", ".join(f.label for f in plots.breakdown_figures(tables.timed(df)))
    return Section("memory-breakdown", "Where memory goes",
                   [Note(f"Memory of one step, stacked: {parts}."), *blocks])


def breakdown_table(df: pd.DataFrame, phase: str) -> Table:
    """The numbers of a phase's stacked memory bars, per case (folded in HTML, under its chart)."""
    shown = fmt.humanize(tables.memory_breakdown(df, phase)).rename(columns={"case_id": "case"})
    return Table(shown, title=f"{phase}: memory of one step per case",
                 numeric=[c for c in shown.columns if c != "case"], folded=True)


def counts_section(df: pd.DataFrame) -> Section | None:
    """Cases counted, not timed (an instruction-count run): their figures, no timing chart."""
    table = tables.untimed(df)
    if table.empty:
        return None
    shown = fmt.humanize(table)
    return Section("counts", "Counted cases (no timing)", [
        Note("These cases were counted, not timed: their figures per call, no timing chart."),
        Table(shown, numeric=[c for c in shown.columns if c != "case_id"], folded=len(shown) > FOLD_ROWS)])


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
    blocks.insert(0, Table(pd.DataFrame(rows, columns=["", *runs]), title="All recorded fields", folded=True))
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


def cache_badges(table: pd.DataFrame, view: pd.DataFrame) -> dict[str, list[str]]:
    """The compile cache column's badge: a warm cache marked (its compile time is not a cold compile)."""
    figure = get(tables.COMPILE_CACHE)
    if figure is None or tables.COMPILE_CACHE not in table or figure.label not in view:
        return {}
    return {figure.label: ["warm" if v == "warm" else "" for v in table[tables.COMPILE_CACHE]]}


def phase_section(df: pd.DataFrame, phase: str, run_dir: Path | None) -> Section:
    """Every timed case of a phase: the table and the charts, folded (the summary answers first)."""
    table = tables.phase_table(df, phase)
    table = table[table["median_s"].notna()].reset_index(drop=True)
    view = phase_view(table)
    links = {}
    if tables.present(table, tables.TRACE):
        view["trace"] = ["trace" if isinstance(d, str) and d else "" for d in table[tables.TRACE]]
        links["trace"] = [trace_href(d, run_dir) for d in table[tables.TRACE]]
    text = [f.label for f in figures(View.TABLE) if f.kind is Kind.TEXT]
    numeric = [c for c in view.columns if c not in ("case_id", "flags", "trace", *text)]
    badges = {"flags": view["flags"].tolist()} if "flags" in view else {}
    badges.update(cache_badges(table, view))
    bars, boxes = plots.phase_bars(df, phase), plots.round_time_boxes(df, phase)
    return Section(f"phase-{phase}", f"{phase}: every case", [
        Table(view, title=f"Every {phase} case", numeric=numeric, links=links, badges=badges, folded=True),
        Charts(bars, title=f"Median time per case ({fmt.count(len(bars), 'chart')})", folded=True),
        Charts(boxes, title=f"Distribution of round times ({fmt.count(len(boxes), 'chart')})", folded=True,
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
    """What compile, a dtype, autocast, a memory format or a device bought: per change measured both ways, each pair's
    speedup with its 95% interval (the gate's ``ratio_interval`` on the raw rounds); then every pair asked for
    that cannot be priced, with the reason (a side failed, was wrong, or is not in the run)."""
    blocks: list[Any] = []
    unpriced = []
    for axis, before, after, title in tables.CHANGES:
        unpriced.append(tables.unpriced_pairs(df, axis, before, after).assign(change=title))
        pairs = tables.speedup_pairs(df, axis, before, after)
        if pairs.empty:
            continue
        significant = (pairs["speedup_low"] > 1) | (pairs["speedup_high"] < 1)
        faster = int((significant & (pairs["speedup"] > 1)).sum())
        slower = int((significant & (pairs["speedup"] < 1)).sum())
        unit, scale = fmt.time_unit(pairs["before_s"])
        view = pd.DataFrame({
            "case": pairs["case_id"],
            f"{title.split(' → ')[0]} ({unit})": fmt.scaled(pairs["before_s"], [(unit, scale)])[1],
            f"{title.split(' → ')[1]} ({unit})": fmt.scaled(pairs["after_s"], [(unit, scale)])[1],
            "speedup (95% interval)": [fmt.speedup_interval(v, lo, hi) for v, lo, hi in
                                       zip(pairs["speedup"], pairs["speedup_low"], pairs["speedup_high"])]})
        badges = ["faster" if s and v > 1 else "slower" if s else "" for s, v in zip(significant, pairs["speedup"])]
        blocks.append(Note(f"{title}: {fmt.count(len(pairs), 'pair')}, median speedup "
                           f"{fmt.speedup(pairs['speedup'].median())}; {faster} significantly faster, "
                           f"{slower} significantly slower, {len(pairs) - faster - slower} {fmt.NOT_SIGNIFICANT}."))
        blocks.append(Table(view, title=title, numeric=list(view.columns[1:3]),
                            badges={"speedup (95% interval)": badges}, folded=len(view) > FOLD_ROWS))
    blocks += unpriced_blocks(pd.concat(unpriced, ignore_index=True))
    if not blocks:
        return None
    charts = plots.speedup_heatmaps(df)
    return Section("speedups", "What a change bought", [
        Note("Speedup: median time before ÷ after, for cases measured both ways; > 1× is faster. The 95% "
             "interval comes from both sides' rounds; a speedup whose interval spans 1 is not significant."),
        *blocks, *([Charts(charts, title="Speedup heatmaps", folded=True)] if charts else [])])


def unpriced_blocks(rows: pd.DataFrame) -> list[Any]:
    """The pairs a change asked for that have no price, each with why: which side, its status
    and error, or that the side is not in this run."""
    if rows.empty:
        return []
    why = [f"{side} side not in this run" if fmt.is_missing(status) else
           f"{side} side {status}" + (f": {reason}" if reason else "")
           for side, status, reason in zip(rows["side"], rows["status"], rows["reason"])]
    view = pd.DataFrame({"change": rows["change"], "case": rows["case_id"], "why not priced": why})
    return [Note(f"{fmt.count(len(rows.drop_duplicates(['change', 'case_id'])), 'pair')} asked for could not be priced: a side failed, "
                 "was wrong, or is not in this run."),
            Table(view, title="Not priced", badges={"why not priced": ["" if fmt.is_missing(s) else str(s)
                                                                        for s in rows["status"]]},
                  folded=len(view) > FOLD_ROWS)]


def chart_section(sid: str, title: str, make, df: pd.DataFrame, phases: list[str]) -> Section | None:
    charts = [c for p in phases for c in make(df, p)]
    return Section(sid, title, [Charts(charts, title=f"{title} per phase", folded=True)]) if charts else None


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
        blocks.append(Table(shown, title="Every memory figure", numeric=[c for c in shown.columns if c != "case_id"],
                            folded=len(shown) > FOLD_ROWS))
    return Section("memory", "Memory", [*blocks, Charts(charts, title="Memory per phase", folded=True)])


def compile_section(df: pd.DataFrame) -> Section | None:
    table = tables.compile_table(df)
    if table.empty:
        return None
    shown = fmt.humanize(table)
    text = [get(c).label for c in table.columns if get(c) is not None and get(c).kind is Kind.TEXT]
    return Section("compile", "Compile behaviour", [
        Note("Cold compile: the first, compiling call, on the case's own empty compile cache (dynamo reset, "
             "inductor's caches in a fresh folder): what a machine that never compiled the model pays. Warm compile: "
             "the same compile again at once, dynamo reset and inductor's in-memory caches emptied, on the on-disk "
             "cache the cold one filled: what a second run on this machine pays. A cold compile marked warm hit a "
             "compile cache after all (runs from before the warm compile was measured mark the compiles that "
             "followed an earlier one). Break reasons say where each graph break happened (file:line); \"inside torch\" is torch's own code, "
             "such as torch.optim's Optimizer.step wrapper, which breaks every compiled optimizer step on purpose."),
        Table(shown, title="Compiled cases", numeric=[c for c in shown.columns if c != "case_id" and c not in text],
              badges=cache_badges(table, shown), folded=len(shown) > FOLD_ROWS)])


# Report names for the profile's operator columns; ``_s`` columns get their unit from format.
OP_NAMES = {"name": "operator", "calls_per_step": "calls/step", "self_cpu_s": "self CPU_s",
            "self_device_s": "self device_s", "cpu_pct": "CPU %"}


def profiles_section(profile: pd.DataFrame, run_dir: Path | None, top: int = 5) -> Section | None:
    """Per profiled case: operator calls and kernel launches per step, where a step goes (its
    breakdown and, in HTML, one step's timeline, both read from its trace), then its top operators."""
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
             "self times. The breakdown and timelines below are read from the traces and need no viewer; "
             "`nox -s tensorboard` or Perfetto show the whole trace, `nox -s trace-diff -- BASE CURRENT` "
             "compares two runs' traces."),
        Table(shown, numeric=[c for c in shown.columns if c not in ("case_id", "trace")], links=links)]
    if run_dir is not None:
        blocks += step_blocks(profile, run_dir)
    for case_id in summary["case_id"]:
        for by, what in (("self_cpu_s", "CPU"), ("self_device_s", "device")):
            ops = profiles.top_ops(profile, case_id, by=by, n=top)
            if not ops.empty:
                ops_shown = fmt.humanize(ops.rename(columns=OP_NAMES))
                blocks.append(Table(ops_shown, title=f"{case_id}: top operators by self {what} time",
                                    numeric=[c for c in ops_shown.columns if c != "operator"]))
    return Section("profiles", "Profiles", blocks)


BREAKDOWN_NOTE = (
    "Where a step goes: the profiled step of median length, the one its timeline draws (fastest and slowest "
    "profiled steps beside it), as shares of that step: each moment belongs to the phase whose span covers it "
    "(forward: the model's call and the loss; backward: autograd's engine; optimizer: zero_grad and step; "
    "data loading: the DataLoader's next batch), else to other (Python between the parts, the gradient's "
    "seed, a compiled optimizer step, which the trace does not name). The host shares sum to 100%. On a "
    "GPU, kernel and idle split the device's step (from the step's start to the end of its last kernel); "
    "launch overhead is the share of the host step spent in launch calls.")
TIMELINE_FOLD = 4  # more timelines than this start folded


def step_blocks(profile: pd.DataFrame, run_dir: Path) -> list[Any]:
    """The step breakdown table and the timelines, from the traces (a note for a trace that
    cannot be read; the other cases still shown)."""
    try:
        views, errors = step_breakdown.read_cases(profiles.trace_folders(run_dir, profile))
    except TraceError as exc:
        views, errors = [], [str(exc)]
    blocks: list[Any] = [Note(f"Trace not shown: {message}", warning=True) for message in errors]
    if not views:
        return blocks
    table = step_breakdown.wide({v.case_id: v.breakdown for v in views})
    unit, step_times = fmt.scaled(table["step_s"], fmt.TIME_UNITS)
    _, scale = fmt.time_unit(table["step_s"])
    view = pd.DataFrame({"case": table["case_id"], f"step ({unit})": step_times,
                         f"fastest–slowest ({unit})": [fmt.number_range(v.fastest_s / scale, v.slowest_s / scale)
                                                       for v in views]})
    for part in step_breakdown.PARTS:
        if part in table:
            view[PART_NAMES.get(part, part)] = [fmt.percent(v) for v in table[part]]
    charts = [plots.timeline_chart(v.case_id, v.spans, v.step_s, note=f"the median of {v.steps} profiled steps")
              for v in views]
    return blocks + [
        Note(BREAKDOWN_NOTE),
        Table(view, title="Where a step goes", numeric=list(view.columns[1:]), folded=len(view) > FOLD_ROWS),
        Charts(charts, title=f"Timelines: one step of each case ({fmt.count(len(charts), 'chart')})",
               folded=len(charts) > TIMELINE_FOLD,
               note="Top-level spans of the step the table shows, a lane per thread and GPU stream, coloured by "
                    "phase; a GPU kernel takes the phase of the call that launched it. A gap between spans is time "
                    "in no span (Python between the parts), which the table counts as other.")]


PART_NAMES = {"kernel": "GPU kernel", "idle": "GPU idle"}


def not_measured_section(df: pd.DataFrame) -> Section | None:
    missing = tables.not_measured(df)
    if missing.empty:
        return None
    view = pd.DataFrame({"case": missing["case_id"], "status": missing["status"], "reason": missing["reason"]})
    return Section("not-measured", "Not measured or invalid",
                   [Table(view, title="Cases", badges={"status": missing["status"].tolist()},
                          folded=len(view) > FOLD_ROWS)])
