"""Self-contained HTML pages: the run report (``report.html``) and the history page.

One file each, images embedded as base64 PNG, styles inline, no script and no external
resource, so a page opens the same from a mail attachment, a CI artifact or a laptop
without network. Numbers become strings through ``render`` only.
"""

from __future__ import annotations

import base64
import html
import os
import time
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from . import plots, render, tables
from .environment import read_environment
from .stats import ci_columns

REPORT_HTML = "report.html"

STYLE = """
:root { --ink:#1f2430; --muted:#667085; --line:#e4e7ec; --accent:#4C72B0; --bg:#f6f7f9; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
main { max-width:1240px; margin:0 auto; padding:28px 24px 60px; }
header h1 { margin:0; font-size:26px; letter-spacing:-0.01em; }
header p { margin:4px 0 0; color:var(--muted); }
nav { margin:18px 0 8px; display:flex; flex-wrap:wrap; gap:6px; }
nav a { padding:3px 10px; border-radius:999px; background:#fff; border:1px solid var(--line);
        color:var(--ink); text-decoration:none; font-size:13px; }
nav a:hover { border-color:var(--accent); color:var(--accent); }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:18px 22px;
          margin-top:18px; }
h2 { margin:0 0 12px; font-size:19px; }
h3 { margin:18px 0 8px; font-size:15px; color:#344054; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(150px,1fr)); gap:10px; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 14px; }
.card b { display:block; font-size:22px; }
.card span { color:var(--muted); font-size:12.5px; }
dl.env { display:grid; grid-template-columns:max-content 1fr; gap:4px 18px; margin:0; }
dl.env dt { color:var(--muted); }
dl.env dd { margin:0; font-family:ui-monospace,"DejaVu Sans Mono",monospace; font-size:13px;
            overflow-wrap:anywhere; }
.note { color:var(--muted); font-size:13px; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:12.5px; }
th, td { padding:5px 7px; border-bottom:1px solid var(--line); text-align:left; white-space:nowrap; }
th { position:sticky; top:0; background:#f9fafb; font-weight:600; color:#344054; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
tr.group td { background:#f2f4f7; font-weight:600; color:#344054; }
tbody tr:hover td { background:#f5f8ff; }
.badge { display:inline-block; padding:0 7px; border-radius:999px; font-size:11.5px; font-weight:600; }
.ok { background:#e7f5ec; color:#1e7a3d; } .skipped { background:#eef0f3; color:#555; }
.error { background:#fde8e8; color:#b42318; } .invalid { background:#fff3e0; color:#b54708; }
.noisy { background:#fff3e0; color:#b54708; }
.warning { background:#fff8e6; border:1px solid #f5d48a; border-radius:8px; padding:8px 12px; color:#7a4b00; }
.slower { background:#fde8e8; color:#b42318; } .faster { background:#e7f5ec; color:#1e7a3d; }
figure { margin:14px 0 0; }
details { margin-top:16px; }
summary { cursor:pointer; font-weight:600; color:#344054; font-size:15px; }
figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
a { color:var(--accent); }
"""


# --- page skeleton ---------------------------------------------------------------------


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """A whole document: header, a link per section, then the ``(id, heading, body)`` sections."""
    nav = "".join(f'<a href="#{sid}">{esc(heading)}</a>' for sid, heading, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(heading)}</h2>{content}</section>'
                   for sid, heading, content in sections)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
            f"<body><main><header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
            f"<nav>{nav}</nav>{body}</main></body></html>\n")


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def figures(charts: Iterable[plots.Chart]) -> str:
    return "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(c.png).decode("ascii")}" '
        f'alt="{esc(c.alt)}" title="{esc(c.title)}"></figure>'
        for c in charts)


def table(view: pd.DataFrame, numeric: Iterable[str] = (), raw_html: Iterable[str] = (),
          group_by: str | None = None) -> str:
    """An HTML table of strings: cells escaped unless their column is in ``raw_html``;
    ``group_by`` starts a labelled row whenever that column's value changes (and hides it)."""
    numeric, raw_html = set(numeric), set(raw_html)
    columns = [c for c in view.columns if c != group_by]
    head = "".join(f'<th class="num">{esc(c)}</th>' if c in numeric else f"<th>{esc(c)}</th>"
                   for c in columns)
    rows, current = [], None
    for _, row in view.iterrows():
        if group_by is not None and row[group_by] != current:
            current = row[group_by]
            rows.append(f'<tr class="group"><td colspan="{len(columns)}">{esc(current)}</td></tr>')
        cells = []
        for c in columns:
            text = str(row[c]) if c in raw_html else esc(row[c])
            cells.append(f'<td class="num">{text}</td>' if c in numeric else f"<td>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _cards(cards: Iterable[tuple[object, str]]) -> str:
    return "".join(f'<div class="card"><b>{esc(n)}</b><span>{esc(label)}</span></div>'
                   for n, label in cards)


def badge(text: str, kind: str | None = None) -> str:
    return f'<span class="badge {esc(kind or text)}">{esc(text)}</span>'


# --- the run report --------------------------------------------------------------------


def report_html(df: pd.DataFrame, environment: dict[str, object], title: str,
                run_dir: Path | None = None) -> str:
    """The run report as one HTML document."""
    measured = tables.ok(df)
    phases = [p for p in render.PHASE_ORDER if (measured["phase"] == p).any()]
    sections = [("summary", "Summary", _summary(df, run_dir)),
                ("environment", "Environment", _environment(environment, measured))]
    sections += [(f"phase-{phase}", phase, _phase_section(df, phase)) for phase in phases]
    optional = [("speedups", "Speedups", plots.speedup_heatmaps(df),
                 "Median time before ÷ after, for cases measured both ways."),
                ("memory", "Memory", [c for p in phases for c in plots.memory_bars(df, p)], ""),
                ("flops", "FLOP/s", [c for p in phases for c in plots.flops_bars(df, p)], "")]
    for sid, heading, charts, note in optional:
        if charts:
            sections.append((sid, heading, (f'<p class="note">{esc(note)}</p>' if note else "")
                             + figures(charts)))
    compiled = _compile_behaviour(df)
    if compiled:
        sections.append(("compile", "Compile behaviour", compiled))
    missing = tables.not_measured(df)
    if not missing.empty:
        sections.append(("not-measured", "Not measured or invalid", _not_measured(missing)))
    runs = ", ".join(sorted(df["run"].astype(str).unique()))
    subtitle = (f"run {runs} · {len(measured)} of {len(df)} cases measured · "
                f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return page(title, subtitle, sections)


def _summary(df: pd.DataFrame, run_dir: Path | None) -> str:
    measured = tables.ok(df)
    counts = df["status"].value_counts()
    cards = [(len(measured), "cases measured")]
    cards += [(int(n), f"{status}") for status, n in counts.items() if status != "ok"]
    cards.append((measured["phase"].nunique(), "phases"))
    cards_html = _cards(cards)
    if measured.empty:
        return f'<div class="cards">{cards_html}</div><p class="note">No case was measured.</p>'
    note = ("Times are medians per call; the 95% CI is that of the median; IQR is the "
            "interquartile range as a share of the median.")
    view = _summary_view(measured, run_dir)
    numeric = [c for c in view.columns if c not in ("phase", "case", "trace", "flags")]
    return (f'<div class="cards">{cards_html}</div><p class="note">{esc(note)}</p>'
            + table(view, numeric=numeric, raw_html=("trace", "flags"), group_by="phase"))


# What the summary shows per case, when the run recorded it (render names and units them);
# graphs and recompiles have their own section.
SUMMARY_COLUMNS = ["median_s", "median_ci_low_s", "median_ci_high_s", "iqr_rel", "rounds",
                   "samples_per_s", "mem_peak_bytes", "flops_per_s", "peak_share", "compile_time_s"]


def _summary_view(measured: pd.DataFrame, run_dir: Path | None) -> pd.DataFrame:
    """One row per measured case in matrix order, every number already a string."""
    rows = tables.matrix_order(measured)
    ci = ci_columns(rows)  # the run's own CI of the median, else one from its rounds (older runs)
    iqr_rel = rows["iqr_rel"] if plots.present(rows, "iqr_rel") else rows["iqr_s"] / rows["median_s"]
    numbers = rows.reindex(columns=SUMMARY_COLUMNS).assign(
        median_ci_low_s=ci["ci_low_s"], median_ci_high_s=ci["ci_high_s"], iqr_rel=iqr_rel)
    shown = render.humanize(numbers.dropna(axis="columns", how="all"))
    # The phase heads each group of rows: the case column shows what is inside the brackets.
    cases = [plots.short_case(c) for c in rows["case_id"]]
    view = pd.concat([rows[["phase"]], pd.DataFrame({"case": cases}), shown], axis="columns")
    view["flags"] = _flags(rows)
    view["trace"] = _trace_links(rows, run_dir)
    return view.loc[:, [c for c in view.columns if (view[c] != "").any() or c in ("phase", "case")]]


def _flags(rows: pd.DataFrame) -> list[str]:
    if not plots.present(rows, "noisy"):
        return [""] * len(rows)
    return [badge("noisy") if v is True or v == 1 else "" for v in rows["noisy"]]


def _trace_links(rows: pd.DataFrame, run_dir: Path | None) -> list[str]:
    """Links to profiler trace folders, relative to the report when they lie beside it."""
    if not plots.present(rows, "trace_dir"):
        return [""] * len(rows)
    links = []
    for value in rows["trace_dir"]:
        if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
            links.append("")
            continue
        links.append(f'<a href="{esc(_href(Path(str(value)), run_dir))}">trace</a>')
    return links


def _href(path: Path, run_dir: Path | None) -> str:
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


def _environment(environment: dict[str, object], measured: pd.DataFrame) -> str:
    env = dict(environment)
    # Figures every run records with its cases, for runs without an environment.json.
    if "torch_version" not in env and not measured["torch_version"].dropna().empty:
        env["torch_version"] = ", ".join(sorted(measured["torch_version"].dropna().astype(str).unique()))
    if "torch_num_threads" not in env and not measured["num_threads"].dropna().empty:
        env["torch_num_threads"] = ", ".join(str(int(t)) for t in sorted(measured["num_threads"].dropna().unique()))
    items = "".join(f"<dt>{esc(label)}</dt><dd>{esc(render._env_value(key, env[key]))}</dd>"
                    for key, label in render.ENVIRONMENT_FIELDS if env.get(key) is not None)
    note = "" if environment else '<p class="note">This run has no environment.json; shown: what its cases recorded.</p>'
    return f'{_busy_warnings(environment, measured)}<dl class="env">{items}</dl>{note}'


def _busy_warnings(environment: dict[str, object], measured: pd.DataFrame) -> str:
    """render's busy-machine warnings (written as Markdown quotes), as warning boxes."""
    runs = ", ".join(sorted(measured["run"].astype(str).unique())) or "this run"
    lines = [line for line in render.busy_machine_warnings({runs: environment}) if line]
    return "".join(f'<p class="warning">{esc(line.removeprefix("> **Warning:** ").replace("`", ""))}</p>'
                   for line in lines)


FOLD_AFTER = 2  # charts; a longer run of distribution charts starts folded


def _phase_section(df: pd.DataFrame, phase: str) -> str:
    bars = plots.phase_bars(df, phase)
    boxes = plots.round_time_boxes(df, phase)
    note = ('<p class="note">Each round times one or more calls; a wide box or far outliers '
            "mean a noisy measurement.</p>")
    if len(boxes) <= FOLD_AFTER:
        return figures(bars) + "<h3>Distribution of round times</h3>" + note + figures(boxes)
    # The full matrix has many cases: keep the medians in view, the distributions a click away.
    return (figures(bars) + f"<details><summary>Distribution of round times ({len(boxes)} charts)"
            f"</summary>{note}{figures(boxes)}</details>")


def _not_measured(missing: pd.DataFrame) -> str:
    view = pd.DataFrame({"case": missing["case_id"], "status": [badge(s) for s in missing["status"]],
                         "reason": missing["reason"]})
    return table(view, raw_html=("status",))


def _compile_behaviour(df: pd.DataFrame) -> str:
    view = render.compile_view(df)
    if view.empty:
        return ""
    shown = render.humanize(view)
    return table(shown, numeric=[c for c in shown.columns if c not in ("case_id", "break reasons")])


def write_html(run_dir: Path, df: pd.DataFrame) -> Path:
    """Write ``report.html`` into the run folder; returns its path."""
    path = run_dir / REPORT_HTML
    document = report_html(df, read_environment(run_dir), f"blitzbench report — {run_dir.name}", run_dir)
    path.write_text(document, encoding="utf-8")
    return path


# --- the history page ------------------------------------------------------------------


def history_html(title: str, marked: pd.DataFrame, changes: pd.DataFrame, latest: pd.DataFrame,
                 runs: pd.DataFrame, min_change: float) -> str:
    """The history as one HTML document: changes, a chart per case over runs, the runs."""
    cards = [(len(runs), "runs"), (len(latest), "cases"), (len(changes), "significant changes")]
    cards_html = _cards(cards)
    summary = (f'<div class="cards">{cards_html}</div>'
               f'<p class="note">{esc(render.SIGNIFICANCE.format(min_change))}</p>')
    sections = [("summary", "Summary", summary)]
    if not changes.empty:
        unit, scale = render.time_unit(changes["before_s"])
        _, before = render.scaled(changes["before_s"], [(unit, scale)])
        _, after = render.scaled(changes["after_s"], [(unit, scale)])
        view = pd.DataFrame({"run": changes["run"], "case": changes["case_id"],
                             f"before ({unit})": before, f"after ({unit})": after,
                             "change": [badge(render.signed_percent(v), "slower" if v > 0 else "faster")
                                        for v in changes["change"]]})
        sections.append(("changes", "Significant changes",
                         table(view, numeric=[f"before ({unit})", f"after ({unit})"], raw_html=("change",))))
    sections.append(("trends", "Median over runs",
                     '<p class="note">Band: 95% confidence interval of the median. '
                     "▲ red: significantly slower than the run before; ▼ green: faster.</p>"
                     + figures(plots.history_charts(marked))))
    unit, medians, cis = render.time_with_ci(latest["median_s"], latest["ci_low_s"], latest["ci_high_s"])
    latest_view = pd.DataFrame({
        "case": latest["case_id"], "runs": latest["runs"].astype(str),
        f"median ({unit})": medians, f"95% CI ({unit})": cis,
        "vs previous run": latest["change"].map(render.signed_percent),
        "": [badge(f) if f else "" for f in latest["flag"]]})
    sections.append(("latest", "Latest run of each case",
                     table(latest_view, numeric=["runs", f"median ({unit})", f"95% CI ({unit})",
                                                 "vs previous run"], raw_html=("",))))
    sections.append(("runs", "Runs", table(render.humanize(runs), numeric=["cases", "measured"])))
    subtitle = (f"{len(runs)} runs, from {runs['run'].iloc[0]} to {runs['run'].iloc[-1]} · "
                f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return page(title, subtitle, sections)
