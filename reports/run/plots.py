"""Charts for the HTML reports: matplotlib figures rendered to PNG bytes.

Figures are made with ``matplotlib.figure.Figure`` and the Agg canvas directly, never
through pyplot, so no global backend or figure state is touched (safe inside pytest and
in notebooks). Every function returns a list of ``Chart``: a chart that would hold more
than ``MAX_ROWS`` cases is split into pages, so labels stay legible with the full matrix.
Units are picked and numbers written by ``reports.format`` (the one place that decides how
numbers read). History charts live with the history (reports/history/pages.py).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from .. import format as fmt
from ..schema import Kind, View, figures, get
from ..stats import ci_columns
from . import tables
from .tables import present

MAX_ROWS = 20  # labelled rows (cases, heatmap rows, bar groups) per chart; more are paginated
MAX_BARS = 40  # bars per bar chart (each carries its value; the groups are the labels)
WIDTH_IN = 10.0
DPI = 110
LOG_RATIO = 30.0  # switch an axis to log scale when its values span more than this
VARIANT_KEYS = ["device", "mode"]
GROUP_KEYS = ["model", "optimizer", "dtype", "batch_size"]
# One colour per variant, the same in every chart (seaborn's muted "deep" colours).
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]
HELD = "mem_held_bytes"  # drawn as a marker beside the charted memory figure
RANKED = 8  # the fastest cases per phase in the summary's ranking

_MPL = tuple(int(p) for p in matplotlib.__version__.split(".")[:2])
# boxplot's vert= was replaced by orientation= in matplotlib 3.10.
_HORIZONTAL = {"orientation": "horizontal"} if _MPL >= (3, 10) else {"vert": False}


@dataclass
class Chart:
    """One rendered figure: the PNG, its title, alt text, and the cases it shows."""

    title: str
    png: bytes
    alt: str
    cases: list[str] = field(default_factory=list)


def short_case(case_id: str) -> str:
    """``train_step[lenet-adam-cpu-eager-b64]`` -> ``lenet-adam-cpu-eager-b64``."""
    return case_id.partition("[")[2].rstrip("]") or case_id


def pages(items: Sequence, size: int = MAX_ROWS) -> list[Sequence]:
    """Split into nearly equal pages of at most ``size`` (21 cases: 11 + 10, not 20 + 1)."""
    if not items:
        return []
    count = math.ceil(len(items) / size)
    per = math.ceil(len(items) / count)
    return [items[i:i + per] for i in range(0, len(items), per)]


def page_title(title: str, index: int, count: int) -> str:
    return title if count == 1 else f"{title} ({index + 1}/{count})"


def _facet_title(title: str, index: int, count: int, rows: pd.DataFrame) -> str:
    """A page's title; a paginated chart names the models its page shows."""
    if count == 1:
        return title
    return f"{page_title(title, index, count)} — {', '.join(dict.fromkeys(rows['model']))}"


def render_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white",
                pil_kwargs={"optimize": True})
    return buffer.getvalue()


def _figure(rows: int, per_row: float = 0.32, extra: float = 1.3) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, extra + rows * per_row))
    fig.set_layout_engine("constrained")
    return fig


def style_axes(ax) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="x", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=8.5)


def _label(row: pd.Series, keys: Iterable[str]) -> str:
    parts = []
    for key in keys:
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        parts.append(f"b{value}" if key == "batch_size" else str(value))
    return " · ".join(parts)


def _varying(df: pd.DataFrame, keys: Iterable[str], always: Iterable[str] = ("model", "optimizer")) -> list[str]:
    """The keys worth printing: those that differ between rows (and the always-shown ones)."""
    return [k for k in keys if k in always or df[k].nunique(dropna=False) > 1]


def _variant_order(df: pd.DataFrame) -> list[str]:
    order = df.assign(_d=df["device"].map({"cpu": 0, "cuda": 1}).fillna(2),
                      _m=df["mode"].map({"eager": 0, "compile": 1}).fillna(2))
    order = order.sort_values(["_d", "_m"])
    return list(dict.fromkeys(_label(r, VARIANT_KEYS) for _, r in order.iterrows()))


def _log_axis_if_wide(ax, values: Iterable[float]) -> bool:
    positive = [v for v in values if v and v > 0 and not math.isnan(v)]
    if positive and max(positive) / min(positive) > LOG_RATIO:
        ax.set_xscale("log")
        return True
    return False


# --- bars per phase: time, memory, FLOP/s ----------------------------------------------


def phase_bars(df: pd.DataFrame, phase: str) -> list[Chart]:
    """Median time per case of one phase: a bar per variant (device · mode) in each group.

    Whiskers are the 95% confidence interval of the median, so bars that differ by less
    than their whiskers are not distinguishable.
    """
    rows = _ok_phase(df, phase)
    if rows.empty:
        return []
    rows = pd.concat([rows, ci_columns(rows)], axis="columns")
    unit, scale = fmt.time_unit(rows["median_s"])
    return _grouped_bars(rows, "median_s", scale, title=f"{phase}: median time per call",
                         xlabel=f"median time per call ({unit}); whiskers: 95% CI of the median",
                         ci=("ci_low_s", "ci_high_s"))


def memory_figures() -> list:
    """The memory figures worth a chart, best first: those the tables show, then the
    deterministic ones, then the rest (the parameters' bytes, a constant, never)."""
    candidates = [f for f in figures(source="memory") if f.kind is Kind.BYTES and f.name != "mem_param_bytes"]
    return sorted(candidates, key=lambda f: (not f.shown_in(View.TABLE), not f.deterministic, f.name == HELD))


def memory_bars(df: pd.DataFrame, phase: str) -> list[Chart]:
    """Memory per case of one phase (the first memory figure the run recorded, peak first);
    a diamond marks the memory still held after the step, where recorded."""
    rows = _ok_phase(df, phase)
    figure = next((f for f in memory_figures() if present(rows, f.name)), None)
    if figure is None:
        return []
    metric = figure.name
    rows = rows.dropna(subset=[metric])
    held = HELD if metric != HELD and present(rows, HELD) else None
    unit, scale = fmt.pick_unit(fmt.BYTE_UNITS, rows[metric])
    xlabel = f"{figure.label} memory ({unit})" + ("; ◆ held after the step" if held else "")
    return _grouped_bars(rows, metric, scale, title=f"{phase}: {figure.label} memory",
                         xlabel=xlabel, marker=held)


def flops_bars(df: pd.DataFrame, phase: str) -> list[Chart]:
    """Achieved FLOP/s per case of one phase; the share of the device's peak where known."""
    rows = _ok_phase(df, phase)
    if not present(rows, "flops_per_s"):
        return []
    rows = rows.dropna(subset=["flops_per_s"])
    unit, scale = fmt.pick_unit(fmt.RATE_UNITS, rows["flops_per_s"])
    labels = None
    if present(rows, "peak_share"):
        _, shares = fmt.scaled(100 * rows["peak_share"].astype(float), [("%", 1.0)])
        labels = [f"{fmt.number(v / scale)} ({s}% of peak)" if s != fmt.MISSING else fmt.number(v / scale)
                  for v, s in zip(rows["flops_per_s"], shares)]
    return _grouped_bars(rows, "flops_per_s", scale, title=f"{phase}: achieved FLOP/s",
                         xlabel=f"achieved {unit}", labels=labels)


def _ok_phase(df: pd.DataFrame, phase: str) -> pd.DataFrame:
    rows = tables.timed(df)
    return rows[rows["phase"] == phase].reset_index(drop=True)


def _grouped_bars(rows: pd.DataFrame, value_col: str, scale: float, title: str, xlabel: str,
                  ci: tuple[str, str] | None = None, marker: str | None = None,
                  labels: list[str] | None = None) -> list[Chart]:
    """Bar charts of one phase's cases: a group per model · optimizer (and whatever else
    varies), a coloured bar per variant, faceted by model and paginated to ``MAX_BARS`` bars."""
    # Plot in the display unit, so ticks fall on round numbers of that unit.
    numbers = [c for c in (value_col, *(ci or ()), marker) if c is not None]
    rows = rows.reset_index(drop=True)
    rows = rows.assign(**{c: rows[c].astype(float) / scale for c in numbers})
    group_keys = _varying(rows, GROUP_KEYS)
    rows = rows.assign(_group=[_label(r, group_keys) for _, r in rows.iterrows()],
                       _variant=[_label(r, VARIANT_KEYS) for _, r in rows.iterrows()],
                       _text=labels if labels is not None else [fmt.number(v) for v in rows[value_col]])
    variants = _variant_order(rows)
    per_page = max(1, min(MAX_ROWS, MAX_BARS // len(variants)))
    page_list = _model_pages(rows, per_page)
    charts = []
    for i, groups in enumerate(page_list):
        chunk = rows[rows["_group"].isin(groups)]
        fig = _bar_figure(chunk, groups, variants, value_col, ci, marker)
        ax = fig.axes[0]
        ax.set_xlabel(xlabel, fontsize=9)
        heading = _facet_title(title, i, len(page_list), chunk)
        ax.set_title(heading, loc="left", fontsize=11, fontweight="bold")
        charts.append(Chart(heading, render_png(fig), f"Bar chart: {title}", list(chunk["case_id"])))
    return charts


def _model_pages(rows: pd.DataFrame, per_page: int) -> list[list[str]]:
    """Pages of row labels (``_group``) facetted by model: a model's rows stay on one page
    where they fit, small models share a page, a model too large for one gets its own pages."""
    result: list[list[str]] = []
    current: list[str] = []
    for model in dict.fromkeys(rows["model"]):
        groups = list(dict.fromkeys(rows.loc[rows["model"] == model, "_group"]))
        if len(groups) > per_page:
            result += [current] if current else []
            result += [list(p) for p in pages(groups, per_page)]
            current = []
        elif len(current) + len(groups) > per_page:
            result.append(current)
            current = groups
        else:
            current += groups
    return result + ([current] if current else [])


def _bar_figure(rows: pd.DataFrame, groups: Sequence[str], variants: Sequence[str], value_col: str,
                ci: tuple[str, str] | None, marker: str | None) -> Figure:
    """Horizontal grouped bars: one group per row label, one coloured bar per variant."""
    present_variants = [v for v in variants if v in set(rows["_variant"])]
    n = len(present_variants)
    height = min(0.8 / max(n, 1), 0.5)  # a lone bar per group stays slim
    fig = _figure(len(groups), per_row=0.22 + 0.2 * n)
    ax = fig.add_subplot()
    style_axes(ax)
    index = {g: i for i, g in enumerate(groups)}
    for k, variant in enumerate(present_variants):
        part = rows[rows["_variant"] == variant]
        y = np.array([index[g] for g in part["_group"]]) - 0.4 + height * (k + 0.5)
        values = part[value_col].to_numpy(dtype=float)
        xerr, ends = None, values
        if ci is not None:
            low, high = part[ci[0]].to_numpy(dtype=float), part[ci[1]].to_numpy(dtype=float)
            xerr = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
            ends = np.fmax(values, high)  # the label goes past the whisker, not over it
        ax.barh(y, values, height=height * 0.92, color=PALETTE[variants.index(variant) % len(PALETTE)],
                label=variant, xerr=xerr, error_kw=dict(ecolor="#333", elinewidth=0.8, capsize=2))
        if marker is not None:
            ax.scatter(part[marker].to_numpy(dtype=float), y, marker="D", s=14, color="#222", zorder=3)
        for yy, end, text in zip(y, ends, part["_text"]):
            ax.annotate(text, (end, yy), xytext=(4, 0), textcoords="offset points",
                        va="center", fontsize=7.5, color="#333")
    ax.set_yticks(range(len(groups)), groups)
    ax.set_ylim(len(groups) - 0.5, -0.5)  # first group on top, as in the table
    _value_axis(ax, rows[value_col])
    ax.margins(x=0.14)
    if n > 1:
        fig.legend(loc="outside upper right", ncols=n, fontsize=8, frameon=False)
    return fig


def _value_axis(ax, values: Iterable[float]) -> None:
    """Tick labels formatted by ``reports.format``; a log axis (ticks at 1, 2, 5 × 10^k) when values span widely."""
    if _log_axis_if_wide(ax, values):
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt.number(v)))


# --- the summary: the fastest cases, where memory goes ---------------------------------


def ranked(df: pd.DataFrame, top: int = RANKED) -> pd.DataFrame:
    """Per phase (in phase order), its ``top`` fastest timed cases by median, fastest first,
    with ``rank``, ``of`` (the phase's timed cases) and ``vs_fastest`` (median / the fastest's)."""
    rows = tables.timed(df)
    parts = []
    for phase in tables.PHASE_ORDER:
        phase_rows = rows[rows["phase"] == phase].sort_values("median_s", kind="stable")
        if phase_rows.empty:
            continue
        part = phase_rows.head(top).reset_index(drop=True)
        part = pd.concat([part, ci_columns(part)], axis="columns")
        part["rank"] = range(1, len(part) + 1)
        part["of"] = len(phase_rows)
        part["vs_fastest"] = part["median_s"] / part["median_s"].iloc[0]
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def ranking_chart(df: pd.DataFrame, top: int = RANKED) -> list[Chart]:
    """One figure, a panel per phase: its fastest cases' medians, sorted, fastest on top,
    whiskers the 95% CI of the median."""
    rows = ranked(df, top)
    if rows.empty:
        return []
    phases = list(dict.fromkeys(rows["phase"]))
    columns = min(2, len(phases))
    panel_rows = math.ceil(len(phases) / columns)
    most = int(rows.groupby("phase").size().max())
    fig = Figure(figsize=(WIDTH_IN, 0.4 + panel_rows * (0.75 + 0.24 * most)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(panel_rows, columns, squeeze=False).ravel()
    for ax, phase in zip(axes, phases):
        part = rows[rows["phase"] == phase]
        unit, scale = fmt.time_unit(part["median_s"])
        values = part["median_s"].to_numpy(dtype=float) / scale
        low, high = (part[c].to_numpy(dtype=float) / scale for c in ("ci_low_s", "ci_high_s"))
        y = np.arange(len(part))
        style_axes(ax)
        ax.barh(y, values, height=0.7, color=[PALETTE[0]] + [PALETTE[7]] * (len(part) - 1),
                xerr=np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)]),
                error_kw=dict(ecolor="#333", elinewidth=0.8, capsize=2))
        for yy, end, value in zip(y, np.fmax(values, high), values):
            ax.annotate(fmt.number(value), (end, yy), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)
        ax.set_yticks(y, [short_case(c) for c in part["case_id"]], fontsize=7.5)
        ax.set_ylim(most - 0.5, -0.5)
        ax.margins(x=0.15)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt.number(v)))
        total = int(part["of"].iloc[0])
        shown = f"fastest {fmt.number(len(part))} of {fmt.number(total)}" if len(part) < total else "all"
        ax.set_title(f"{phase} ({shown})", loc="left", fontsize=9.5, fontweight="bold")
        ax.set_xlabel(f"median per call ({unit})", fontsize=8)
    for ax in axes[len(phases):]:
        ax.set_visible(False)
    fig.suptitle("Fastest cases per phase (whiskers: 95% CI of the median)", x=0.01, ha="left",
                 fontsize=11, fontweight="bold")
    return [Chart("Fastest cases per phase", render_png(fig), "Bar charts of each phase's fastest cases, sorted",
                  list(rows["case_id"]))]


def breakdown_figures(df: pd.DataFrame) -> list:
    """The memory breakdown figures declared and recorded (none for runs before they existed)."""
    return [get(n) for n in tables.breakdown_parts(df)]


def memory_breakdown(df: pd.DataFrame, phase: str) -> list[Chart]:
    """Per case of one phase, a stacked bar: parameters, gradients, optimizer state, activations
    (what was recorded of them); nothing for a run that recorded none but the parameters."""
    rows = tables.memory_breakdown(df, phase)
    parts = breakdown_figures(rows)
    if rows.empty:
        return []
    unit, scale = fmt.pick_unit(fmt.BYTE_UNITS, rows[[f.name for f in parts]].sum(axis="columns"))
    charts = []
    page_list = pages(list(rows["case_id"]), MAX_BARS)
    for i, page in enumerate(page_list):
        chunk = rows[rows["case_id"].isin(page)]
        fig = _figure(len(chunk), per_row=0.2, extra=1.1)
        ax = fig.add_subplot()
        style_axes(ax)
        y = np.arange(len(chunk))
        left = np.zeros(len(chunk))
        for k, figure in enumerate(parts):
            values = chunk[figure.name].to_numpy(dtype=float) / scale
            values = np.nan_to_num(values)
            ax.barh(y, values, left=left, height=0.72, color=PALETTE[k % len(PALETTE)], label=figure.label)
            left += values
        for yy, total in zip(y, left):
            ax.annotate(fmt.number(total), (total, yy), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=7)
        ax.set_yticks(y, [short_case(c) for c in chunk["case_id"]], fontsize=7.5)
        ax.set_ylim(len(chunk) - 0.5, -0.5)
        ax.margins(x=0.1)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt.number(v)))
        ax.set_xlabel(f"memory of one step ({unit})", fontsize=9)
        title = page_title(f"{phase}: where memory goes", i, len(page_list))
        ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
        fig.legend(loc="outside upper right", ncols=len(parts), fontsize=8, frameon=False)
        charts.append(Chart(title, render_png(fig), f"Stacked bars of the memory of each {phase} case: "
                            + ", ".join(f.label for f in parts), list(chunk["case_id"])))
    return charts


# --- raw round times -------------------------------------------------------------------


def round_time_boxes(df: pd.DataFrame, phase: str) -> list[Chart]:
    """The distribution of every round's time per case: box (quartiles, 1.5 IQR whiskers)
    with the individual rounds drawn as dots when there are few of them."""
    rows = _ok_phase(df, phase)
    rows = rows[rows["times_s"].map(len) > 0]
    if rows.empty:
        return []
    unit, scale = fmt.time_unit(rows["median_s"])
    all_times = np.concatenate([np.asarray(t, dtype=float) / scale for t in rows["times_s"]])
    page_list = _model_pages(rows.assign(_group=rows["case_id"]), MAX_ROWS)
    charts = []
    for i, page in enumerate(page_list):
        chunk = rows[rows["case_id"].isin(page)]
        fig = _figure(len(chunk), per_row=0.34)
        ax = fig.add_subplot()
        style_axes(ax)
        data = [np.asarray(t, dtype=float) / scale for t in chunk["times_s"]]
        positions = np.arange(len(data))
        ax.boxplot(data, positions=positions, widths=0.6, showfliers=True, **_HORIZONTAL,
                   patch_artist=True, medianprops=dict(color="#C44E52", linewidth=1.5),
                   boxprops=dict(facecolor="#dbe4f0", edgecolor="#4C72B0"),
                   whiskerprops=dict(color="#4C72B0"), capprops=dict(color="#4C72B0"),
                   flierprops=dict(marker=".", markersize=2.5, alpha=0.35, markeredgecolor="none",
                                   markerfacecolor="#555"))
        rng = np.random.default_rng(0)  # fixed jitter: the same report renders the same
        for pos, times in zip(positions, data):
            if len(times) <= 60:
                ax.scatter(times, pos + rng.uniform(-0.18, 0.18, len(times)), s=7, color="#333",
                           alpha=0.6, zorder=3, linewidths=0)
        # The chart is per phase: the label drops the phase.
        ax.set_yticks(positions, [short_case(c) for c in chunk["case_id"]])
        ax.set_ylim(len(data) - 0.5, -0.5)
        _value_axis(ax, all_times)
        ax.set_xlabel(f"time per call in each round ({unit}); box: quartiles; red: median", fontsize=9)
        title = _facet_title(f"{phase}: round times", i, len(page_list), chunk)
        ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
        charts.append(Chart(title, render_png(fig), f"Box plots of the raw round times of {phase} cases",
                            list(chunk["case_id"])))
    return charts


# --- speedup heatmaps ------------------------------------------------------------------

SPEEDUPS: list[tuple[str, str, Callable[[pd.DataFrame], pd.DataFrame]]] = [
    ("eager → compile speedup", "mode", tables.compile_speedup),
    ("CPU → CUDA speedup", "device", tables.device_speedup),
]
NO_OPTIMIZER_PANEL = "forward · backward"


def speedup_heatmaps(df: pd.DataFrame) -> list[Chart]:
    """Model × optimizer heatmaps of each speedup, a panel per phase (forward and backward,
    which take no optimizer, share one); > 1× means faster."""
    charts = []
    for title, axis, speedup in SPEEDUPS:
        table = speedup(df)
        if table.empty:
            continue
        no_optimizer = table["optimizer"].isna()
        table = table.assign(_panel=table["phase"].where(~no_optimizer, NO_OPTIMIZER_PANEL),
                             _column=table["optimizer"].where(~no_optimizer, table["phase"]))
        row_keys = _varying(table, [k for k in ("model", "device", "mode", "dtype", "batch_size")
                                    if k != axis], always=("model",))
        table["_row"] = [_label(r, row_keys) for _, r in table.iterrows()]
        row_labels = list(dict.fromkeys(table["_row"]))
        page_list = pages(row_labels)
        for i, page in enumerate(page_list):
            fig = _heatmap_figure(table[table["_row"].isin(page)], page)
            heading = page_title(title, i, len(page_list))
            fig.suptitle(heading + " (× faster; > 1 is faster)", x=0.01, ha="left",
                         fontsize=11, fontweight="bold")
            charts.append(Chart(heading, render_png(fig), f"Heatmap of the {title}, model by optimizer",
                                list(page)))
    return charts


def _heatmap_figure(table: pd.DataFrame, row_labels: list[str]) -> Figure:
    panels = [p for p in (NO_OPTIMIZER_PANEL, *tables.PHASE_ORDER) if p in set(table["_panel"])]
    columns = {p: list(dict.fromkeys(table.loc[table["_panel"] == p, "_column"])) for p in panels}
    if NO_OPTIMIZER_PANEL in columns:  # its columns are phases: in phase order
        columns[NO_OPTIMIZER_PANEL].sort(key=tables.PHASE_ORDER.index)
    widths = [len(c) for c in columns.values()]
    fig = Figure(figsize=(min(WIDTH_IN, 2.8 + 0.62 * sum(widths) + 0.5 * len(panels)),
                          1.9 + 0.36 * len(row_labels)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, len(panels), width_ratios=widths, squeeze=False)[0]
    log2 = np.log2(table["speedup"].astype(float))
    limit = max(1.0, float(np.nanmax(np.abs(log2))))
    norm = Normalize(-limit, limit)
    image = None
    for ax, panel in zip(axes, panels):
        grid = (table[table["_panel"] == panel]
                .pivot_table(index="_row", columns="_column", values="speedup", aggfunc="median")
                .reindex(index=row_labels, columns=columns[panel]))
        values = grid.to_numpy(dtype=float)
        image = ax.imshow(np.log2(values), cmap="RdBu", norm=norm, aspect="auto")
        for (r, c), value in np.ndenumerate(values):
            if not math.isnan(value):
                dark = abs(math.log2(value)) > 0.6 * limit
                ax.text(c, r, fmt.speedup_label(value), ha="center", va="center", fontsize=7.5,
                        color="white" if dark else "#222")
        ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=35, ha="right", fontsize=8.5)
        ax.set_yticks(range(len(row_labels)), row_labels if ax is axes[0] else [], fontsize=8.5)
        ax.set_title(panel, fontsize=9.5)
        ax.tick_params(length=0)
        for spine in ax.spines.values():
            spine.set_visible(False)
    bar = fig.colorbar(image, ax=list(axes), shrink=0.9, pad=0.02)
    step = max(1, math.ceil(limit / 3))  # at most 7 ticks, at powers of two
    ticks = list(range(-step * int(limit // step), int(limit) + 1, step))
    bar.set_ticks(ticks, labels=[f"{fmt.number(2.0 ** t)}×" for t in ticks])
    return fig


# --- the seed's data pipeline ----------------------------------------------------------------


def _pipeline_label(row: pd.Series) -> str:
    return f"{row['phase']} {row['model']} · {row['setting']}"


def pipeline_throughput(rows: pd.DataFrame) -> list[Chart]:
    """Images/s of every data and epoch case, one bar per loader setting, fastest on top."""
    if rows.empty:
        return []
    rows = rows.sort_values("samples_per_s", ascending=False, kind="stable")
    fig = _figure(len(rows), per_row=0.26, extra=1.0)
    ax = fig.add_subplot()
    style_axes(ax)
    y = np.arange(len(rows))
    colors = [PALETTE[0] if phase == "epoch" else PALETTE[1] for phase in rows["phase"]]
    values = rows["samples_per_s"].to_numpy(dtype=float)
    ax.barh(y, values, height=0.7, color=colors)
    for yy, value in zip(y, values):
        ax.annotate(fmt.number(value), (value, yy), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=7)
    ax.set_yticks(y, [_pipeline_label(r) for _, r in rows.iterrows()], fontsize=7.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.margins(x=0.12)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt.number(v)))
    ax.set_xlabel("images/s (epoch: the seed's whole loop; data: the DataLoader alone)", fontsize=8)
    title = "Images/s per loader setting"
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    return [Chart(title, render_png(fig), "Bar chart of images per second of each data and epoch case",
                  list(rows["case_id"]))]


def pipeline_split(rows: pd.DataFrame) -> list[Chart]:
    """Per epoch case, the median step stacked: waiting for the batch, then computing on it."""
    rows = rows[rows["phase"] == "epoch"].dropna(subset=["data_wait_s", "compute_s"])
    if rows.empty:
        return []
    unit, scale = fmt.time_unit(rows["data_wait_s"] + rows["compute_s"])
    fig = _figure(len(rows), per_row=0.26, extra=1.1)
    ax = fig.add_subplot()
    style_axes(ax)
    y = np.arange(len(rows))
    wait = rows["data_wait_s"].to_numpy(dtype=float) / scale
    compute = rows["compute_s"].to_numpy(dtype=float) / scale
    ax.barh(y, wait, height=0.7, color=PALETTE[3], label="waiting for data")
    ax.barh(y, compute, left=wait, height=0.7, color=PALETTE[0], label="compute")
    for yy, total, share in zip(y, wait + compute, rows["data_wait_share"]):
        ax.annotate(f"{fmt.percent(share)} waiting", (total, yy), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=7)
    ax.set_yticks(y, [_pipeline_label(r) for _, r in rows.iterrows()], fontsize=7.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.margins(x=0.18)
    ax.set_xlabel(f"median step of the seed's loop ({unit})", fontsize=8)
    title = "Where a step of the loop goes: data wait against compute"
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    fig.legend(loc="outside upper right", ncols=2, fontsize=8, frameon=False)
    return [Chart(title, render_png(fig), "Stacked bars of each epoch case's median step: data wait and compute",
                  list(rows["case_id"]))]


# --- profiler timelines --------------------------------------------------------------------

# One colour per part of a step, the same in every timeline (and its legend in this order).
PHASE_COLOURS = {"forward": PALETTE[0], "backward": PALETTE[1], "optimizer": PALETTE[2],
                 "data loading": PALETTE[4], "other": PALETTE[7]}
# Torch's long span names, shortened for a label on the bar (the legend names the phase).
_SPAN_PREFIXES = (("autograd::engine::evaluate_function: ", None), ("Optimizer.step#", None),
                  ("Optimizer.zero_grad#", None), ("enumerate(DataLoader)#", "next batch"), ("blitzbench::", None))
LABEL_SHARE = 0.04  # a span narrower than this share of the step gets no name
CHAR_SHARE = 0.0065  # the share of the step's width one character of a bar's name takes


def short_span(name: str) -> str:
    """``autograd::engine::evaluate_function: AddmmBackward0`` -> ``AddmmBackward0``; the
    DataLoader's iterator -> ``next batch``."""
    for prefix, replacement in _SPAN_PREFIXES:
        if name.startswith(prefix):
            return replacement or name[len(prefix):]
    return name


def timeline_chart(case_id: str, spans: pd.DataFrame, step_s: float, note: str = "") -> Chart:
    """One step's top-level spans over time: a lane per thread or device stream, each span a
    bar coloured by its phase, the wide ones named."""
    lanes = list(dict.fromkeys(spans["lane"]))
    lanes.sort(key=lambda lane: (lane != "main thread", lane.startswith("GPU"), lane))
    unit, scale = fmt.time_unit([step_s])
    fig = Figure(figsize=(WIDTH_IN, 1.5 + 0.55 * len(lanes)))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    style_axes(ax)
    width = max(step_s, float((spans["start_s"] + spans["dur_s"]).max()) if not spans.empty else 0.0) / scale
    for phase, colour in PHASE_COLOURS.items():
        mine = spans[spans["phase"] == phase]
        for y, lane in enumerate(lanes):
            bars = mine[mine["lane"] == lane]
            if not bars.empty:
                ax.broken_barh(list(zip(bars["start_s"] / scale, bars["dur_s"] / scale)), (y - 0.35, 0.7),
                               facecolors=colour, edgecolors="white", linewidth=0.4)
    for _, span in spans.iterrows():
        label, share = short_span(span["name"]), span["dur_s"] / scale / (width or 1.0)
        if share >= max(LABEL_SHARE, CHAR_SHARE * len(label)):  # names only where they fit
            ax.text((span["start_s"] + span["dur_s"] / 2) / scale, lanes.index(span["lane"]), label,
                    ha="center", va="center", fontsize=7, color="white", clip_on=True)
    ax.set_yticks(range(len(lanes)), lanes)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlim(0, width or 1.0)
    ax.set_xlabel(f"time from the step's start ({unit})" + (f"; {note}" if note else ""), fontsize=9)
    title = f"{case_id}: one step ({fmt.with_unit(step_s, fmt.TIME_UNITS)})"
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    shown = [p for p in PHASE_COLOURS if (spans["phase"] == p).any()]
    handles = [Patch(color=PHASE_COLOURS[p], label=p) for p in shown]
    fig.legend(handles=handles, loc="outside upper right", ncols=max(len(shown), 1), fontsize=8, frameon=False)
    return Chart(title, render_png(fig), f"Timeline of one profiled step of {case_id}: top-level spans per "
                 f"thread and stream, coloured by phase ({', '.join(shown)})", [case_id])
