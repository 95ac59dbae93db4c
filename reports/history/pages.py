"""The history's pages: ``history.md`` and ``history.html`` (the same sections: shifts, each
case's median over runs, the latest run of each case, the runs)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bench.schema.files import DEFAULT_RESULTS_DIR, HISTORY_HTML, HISTORY_MD
from bench.schema.results import write_atomic

from .. import format as fmt
from ..run.document import Cards, Charts, Note, Section, Table
from ..run.html import write_html
from ..run.markdown import write_markdown
from ..run.plots import WIDTH_IN, Chart, page_title, pages, render_png, style_axes
from .changes import MIN_SHIFT, SHIFTS, latest_table, mark_shifts, runs_table, shifts_table
from .postgres import is_server
from .store import HistoryError, describe, load_history, locate

BAND_NOTE = "Band: 95% confidence interval of the median. ▲ red: shifted slower than the run before; ▼ green: shifted faster."
SHIFT_RULE = ("A shift is marked where the 95% confidence intervals of the medians of a case's "
              "consecutive runs do not overlap and the median moved by at least {:.0%}.")


def history_sections(marked: pd.DataFrame, shifts: pd.DataFrame, latest: pd.DataFrame, runs: pd.DataFrame,
                     min_shift: float) -> list[Section]:
    counts = [(len(runs), "runs"), (len(latest), "cases"), (len(shifts), "shifts")]
    summary = ", ".join(fmt.count(n, noun.rstrip("s")) for n, noun in counts)
    rule = SHIFT_RULE.format(min_shift) + (" Runs are compared only with runs of the same kind (bench, profile, "
                                           "count) and the same max time per case.")
    sections = [Section("summary", "Summary", [Cards(counts), Note(f"{summary}. " + rule)])]
    points = marked.groupby("series", sort=False)["run"].count()
    drawn = [s for s in points.index if points[s] > 1]
    changed = [s for s in dict.fromkeys(shifts["series"]) if s in drawn]
    if not shifts.empty:
        unit, scale = fmt.time_unit(shifts["before_s"])
        _, before = fmt.scaled(shifts["before_s"], [(unit, scale)])
        _, after = fmt.scaled(shifts["after_s"], [(unit, scale)])
        view = pd.DataFrame({"run": shifts["run"], "case_id": shifts["series"], f"before ({unit})": before,
                             f"after ({unit})": after, "moved": shifts["moved"].map(fmt.signed_percent)})
        badges = [SHIFTS[0] if v > 0 else SHIFTS[1] for v in shifts["moved"]]
        sections.append(Section("shifts", "Cases that changed", [
            Table(view, numeric=[f"before ({unit})", f"after ({unit})"], badges={"moved": badges}),
            Charts(history_charts(marked[marked["series"].isin(changed)]), note=BAND_NOTE)]))
    others = [s for s in drawn if s not in changed]
    single = [s for s in points.index if points[s] == 1]
    blocks: list = []
    if others:
        charts = history_charts(marked[marked["series"].isin(others)])
        blocks.append(Charts(charts, title=f"Cases that did not shift ({fmt.count(len(others), 'case')})",
                             folded=bool(changed), note=BAND_NOTE))
    if single:
        blocks.append(Note(f"Measured in one run only, not drawn ({fmt.count(len(single), 'case')}): "
                           + ", ".join(single) + "."))
    if blocks:
        sections.append(Section("trends", "Median over runs", blocks))
    unit, medians, cis = fmt.time_with_ci(latest["median_s"], latest["ci_low_s"], latest["ci_high_s"])
    view = pd.DataFrame({"case_id": latest["case_id"], "runs": latest["runs"].astype(str),
                         f"median ({unit})": medians, f"95% CI ({unit})": cis,
                         "vs previous run": latest["vs_previous"].map(fmt.signed_percent), "shift": latest["shift"]})
    sections.append(Section("latest", "Latest run of each case", [Table(
        view, numeric=["runs", f"median ({unit})", f"95% CI ({unit})", "vs previous run"],
        badges={"shift": latest["shift"].tolist()})]))
    sections.append(Section("runs", "Runs", [Table(fmt.humanize(runs), numeric=["cases", "measured", "max time (s)"])]))
    return sections


def write_history_report(db: Path | str, out_dir: Path | str | None = None,
                         min_shift: float = MIN_SHIFT) -> dict[str, Path]:
    """Write ``history.html`` and ``history.md`` (beside the history file by default; for a
    server's history, in the results folder)."""
    name = describe(db)
    history = load_history(db)
    marked = mark_shifts(history, min_shift)
    if marked.empty:
        raise HistoryError(f"{name}: no measured case in the history yet")
    default = Path(DEFAULT_RESULTS_DIR) if is_server(db) else locate(db).parent
    out = Path(out_dir) if out_dir is not None else default
    out.mkdir(parents=True, exist_ok=True)
    runs = runs_table(history)
    sections = history_sections(marked, shifts_table(marked), latest_table(marked), runs, min_shift)
    title = f"blitzbench history — {name if is_server(db) else locate(db).name}"
    subtitle = (f"{len(runs)} runs, from {runs['run'].iloc[0]} to {runs['run'].iloc[-1]} · "
                f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    md_path, html_path = out / HISTORY_MD, out / HISTORY_HTML
    write_atomic(md_path, write_markdown(title, sections))
    write_atomic(html_path, write_html(title, subtitle, sections))
    return {"markdown": md_path, "html": html_path}


# --- charts ----------------------------------------------------------------------------

HISTORY_PER_FIGURE = 12  # small multiples: 3 columns × 4 rows
HISTORY_COLUMNS = 3


def history_charts(history: pd.DataFrame) -> list[Chart]:
    """Each case's median over runs with its 95% CI band; significant changes marked.

    ``history`` has one row per (run, case) in run order, with ``median_s``, ``ci_low_s``,
    ``ci_high_s`` and ``shift`` (``"slower"``, ``"faster"`` or empty).
    """
    runs = list(dict.fromkeys(history["run"]))
    key = "series" if "series" in history else "case_id"
    cases = list(dict.fromkeys(history[key]))
    page_list = pages(cases, HISTORY_PER_FIGURE)
    charts = []
    for i, page in enumerate(page_list):
        fig = _history_figure(history, page, runs)
        title = page_title("Median time per call over runs", i, len(page_list))
        fig.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold")
        charts.append(Chart(title, render_png(fig), "Line charts of each case's median over runs",
                            list(page)))
    return charts


def _history_figure(history: pd.DataFrame, cases: Sequence[str], runs: list[str]) -> Figure:
    columns = min(HISTORY_COLUMNS, len(cases))
    rows = math.ceil(len(cases) / columns)
    fig = Figure(figsize=(WIDTH_IN, 0.6 + 2.3 * rows))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, case_id in zip(axes, cases):
        _history_panel(ax, history[history["series" if "series" in history else "case_id"] == case_id], runs, case_id)
    for ax in axes[len(cases):]:
        ax.set_visible(False)
    return fig


def _history_panel(ax, rows: pd.DataFrame, runs: list[str], case_id: str) -> None:
    style_axes(ax)
    ax.grid(axis="y", color="#e5e5e5", linewidth=0.8)
    x = np.array([runs.index(r) for r in rows["run"]])
    unit, scale = fmt.time_unit(rows["median_s"])
    median, low, high = (rows[c].to_numpy(dtype=float) / scale for c in ("median_s", "ci_low_s", "ci_high_s"))
    # A run stored without its rounds has no interval: its band narrows to the median.
    low, high = np.where(np.isnan(low), median, low), np.where(np.isnan(high), median, high)
    ax.fill_between(x, low, high, color="#4C72B0", alpha=0.18, linewidth=0, label="95% CI")
    ax.plot(x, median, color="#4C72B0", marker="o", markersize=3.5, linewidth=1.4, label="median")
    for shift, marker, colour in zip(SHIFTS, ("^", "v"), ("#C44E52", "#55A868")):
        hit = (rows["shift"] == shift).to_numpy()
        if hit.any():
            ax.scatter(x[hit], median[hit], marker=marker, s=70, color=colour, zorder=4,
                       edgecolors="white", linewidths=0.8, label=shift)
    ax.set_title(case_id, fontsize=8.5, loc="left")
    ax.set_ylabel(unit, fontsize=8)
    # At least ±10% of the typical median in view: the band shows, noise is not blown up.
    centre, low_end, high_end = np.nanmedian(median), np.nanmin(low), np.nanmax(high)
    half = max((high_end - low_end) / 2 * 1.15, 0.1 * centre)
    middle = (high_end + low_end) / 2
    ax.set_ylim(max(0.0, middle - half), middle + half)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _short_run(runs, v)))
    ax.set_xlim(-0.3, max(len(runs) - 0.7, 0.3))
    ax.tick_params(axis="x", labelsize=7)


def _short_run(runs: list[str], position: float) -> str:
    """``20261122-113646`` -> ``11-22 11:36``: run folders are named by their UTC start."""
    i = int(round(position))
    if not 0 <= i < len(runs):
        return ""
    name = runs[i]
    if len(name) >= 15 and name[8] == "-" and name[:8].isdigit():
        return f"{name[4:6]}-{name[6:8]} {name[9:11]}:{name[11:13]}"
    return name[:14]
