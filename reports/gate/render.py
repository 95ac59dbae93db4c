"""Rendering of a gate verdict: Markdown for a pull-request comment, and a JSON document.

gate.md's order: what the gate could not check (cases that failed or were lost on the head),
regressions of wall time, the cases it cannot tell at this run count (their noise is above
their threshold), instruction count regressions with the functions that grew most,
deterministic changes, where the flagged cases changed in their profiler traces (when both
sides were profiled), improvements, what was not gated (unstable counts, unmatched cases),
then the unchanged cases.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import format as fmt
from ..format import plain_row, relative
from ..traces.diff import GateTraces, diff_markdown
from .compare import CASE_KINDS

# Instructions per call: plain counts, scaled for reading (stored unscaled, as every count).
INSTRUCTION_UNITS = [("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0)]
CASE_HEADINGS = {
    "failed": ("Failed on the head", "Measured on the base; the head ended them in a failure."),
    "lost": ("Lost on the head", "Measured on the base, not on the head (absent, skipped or unsupported there): "
             "not checked."),
}
GATE_TOP = 5  # operators per flagged case in gate.md (trace-diff lists more)
NOT_COMPARED = {"new": "new on the head", "gone": "only on the base, not ok there",
                "not_compared": "not ok on the base"}
# Beyond this many runs per side, gate.md advises instruction counts instead of more runs.
MAX_RUNS_ADVISED = 20
CANNOT_TELL_NOTE = (
    "Each case's noise at this run count (its calibrated floor, the 95% interval of its medians, or a drift "
    "of its rounds) is above its threshold: a change of the threshold's size could hide in it, or be made by "
    "it, so these cases are neither passed nor flagged, and the gate fails until they can be told. Run more "
    "interleaved runs per side (the estimate assumes the noise shrinks as 1/√runs), give such a case a "
    "threshold above its noise (`--case-threshold`), or gate on instruction counts, which repeat to a "
    "fraction of a percent from one run per side (`nox -s count`, or `--metric instructions`; README).")


def _changes(rows: pd.DataFrame) -> list[str]:
    """Each case's change with its 95% interval: ``+9.9% (+9.6% … +10.4%)``."""
    return [f"{relative(r - 1)} ({relative(lo - 1)} … {relative(hi - 1)})"
            for r, lo, hi in zip(rows["ratio"], rows["ratio_low"], rows["ratio_high"])]


def _timing_table(rows: pd.DataFrame, normalized: bool = False) -> str:
    """Medians, the change with its interval, p, threshold and noise; normalized, the raw
    (measured) change beside the change relative to the run-wide shift."""
    unit, scale = fmt.time_unit(pd.concat([rows["baseline_s"], rows["current_s"]]))
    view = {"case": rows["case_id"],
            f"baseline → current ({unit})": [f"{fmt.number(b / scale)} → {fmt.number(c / scale)}"
                                             for b, c in zip(rows["baseline_s"], rows["current_s"])]}
    if normalized:
        view["raw change"] = [relative(r - 1) for r in rows["raw_ratio"]]
    view["change vs the run (95% CI)" if normalized else "change (95% CI)"] = _changes(rows)
    view.update({"p (Holm)": [fmt.p_value(p) for p in rows["p_value"]],
                 "threshold": [fmt.percent(t) for t in rows["threshold"]],
                 "min. detectable": [fmt.percent(m) for m in rows["min_detectable"]]})
    if "tokens_per_s_base" in rows and rows["tokens_per_s_base"].notna().any():  # token workloads
        view["tokens/s"] = [_pair(fmt.number, b, c) for b, c in zip(rows["tokens_per_s_base"], rows["tokens_per_s_cur"])]
        view["MFU"] = [_pair(fmt.percent, b, c) for b, c in zip(rows["mfu_base"], rows["mfu_cur"])]
    return pd.DataFrame(view).to_markdown(index=False)


def _pair(render: Any, before: Any, after: Any) -> str:
    """``before → after``, or – for a case without the figure."""
    if before is None or after is None or pd.isna(before) or pd.isna(after):
        return "–"
    return f"{render(before)} → {render(after)}"


def _against_the_grain(rows: pd.DataFrame) -> list[str]:
    """Normalized verdicts whose raw change goes the other way, each said in words: a case
    called faster whose own median rose (or slower whose own median fell)."""
    lines = []
    for case_id, verdict, raw in zip(rows["case_id"], rows["verdict"], rows["raw_ratio"]):
        if (verdict == "improvement") == (raw > 1):
            lines.append(f"`{case_id}`: {'faster' if verdict == 'improvement' else 'slower'} only relative to the "
                         f"run-wide shift; its own median changed by {relative(raw - 1)}.")
    return lines


def _cannot_tell_table(rows: pd.DataFrame) -> str:
    view = pd.DataFrame({
        "case": rows["case_id"],
        "change (95% CI)": _changes(rows),
        "noise": [f"±{fmt.percent(n)} ({source})" for n, source in zip(rows["noise"], rows["noise_source"])],
        "threshold": [fmt.percent(t) for t in rows["threshold"]],
        "runs per side": [fmt.number(min(b, c)) for b, c in zip(rows["runs_base"], rows["runs_cur"])],
        "needed (about)": [f"over {fmt.number(MAX_RUNS_ADVISED)}: count instead" if fmt.is_missing(n)
                           or n > MAX_RUNS_ADVISED else fmt.number(int(n)) for n in rows["runs_needed"]],
    })
    return view.to_markdown(index=False)


def _cannot_tell_lines(rows: pd.DataFrame) -> list[str]:
    runs = sorted({int(min(b, c)) for b, c in zip(rows["runs_base"], rows["runs_cur"])})
    heading = f"### Cannot tell at {' or '.join(fmt.count(n, 'run') for n in runs)} per side"
    return [heading, "", CANNOT_TELL_NOTE, "", _cannot_tell_table(rows), ""]


def _instructions(values: list[Any]) -> list[str]:
    unit, strings = fmt.scaled(values, INSTRUCTION_UNITS)
    return [s if s == fmt.MISSING else f"{s}{unit}" for s in strings]


def _count_table(rows: pd.DataFrame) -> str:
    before, after = _instructions(rows["baseline"].tolist()), _instructions(rows["current"].tolist())
    view = pd.DataFrame({
        "case": rows["case_id"],
        "instructions per call": [f"{b} → {a}" for b, a in zip(before, after)],
        "change": [fmt.signed_percent(r - 1) for r in rows["ratio"]],
        "threshold": [fmt.short_percent(t) for t in rows["threshold"]],
        "repeat spread (base / head)": [f"{fmt.percent(b, 2)} / {fmt.percent(c, 2)}"
                                        for b, c in zip(rows["spread_base"], rows["spread_cur"])],
    })
    return view.to_markdown(index=False)


def _grown_table(top: list[dict[str, Any]]) -> str:
    before = _instructions([f["baseline"] for f in top])
    after = _instructions([f["current"] for f in top])
    view = pd.DataFrame({
        "function": [f"`{f['function']}`" for f in top],
        "per call": [f"{b} → {a}" for b, a in zip(before, after)],
        "change": [f"+{s}" + (f" ({fmt.signed_percent(f['change'] / f['baseline'])})" if f["baseline"] else "")
                   for s, f in zip(_instructions([f["change"] for f in top]), top)],
    })
    return view.to_markdown(index=False)


def _case_table(rows: pd.DataFrame, why: bool = False) -> str:
    view = {"case": rows["case_id"].tolist()}
    if why:
        view["why"] = [NOT_COMPARED[k] for k in rows["kind"]]
    view["base"] = ["absent" if fmt.is_missing(s) else s for s in rows["status_base"]]
    view["head"] = ["absent" if fmt.is_missing(s) else s for s in rows["status_cur"]]
    view["error"] = [fmt.reasons(e, limit=200) for e in rows["error"]]
    return pd.DataFrame(view).to_markdown(index=False)


def _summary(counts: dict[str, int]) -> list[str]:
    parts = []
    if counts["failed"] or counts["lost"]:
        parts.append(f"{counts['failed']} failed and {counts['lost']} lost on the head")
    if counts["timed"] or not counts["counted"]:
        parts.append(f"{fmt.count(counts['timed'], 'case')} timed: {counts['regressions']} slower, "
                     f"{counts['improvements']} faster, {counts['unchanged']} unchanged"
                     + (f", {counts['cannot_tell']} cannot tell" if counts.get("cannot_tell") else ""))
    if counts["counted"]:
        parts.append(f"{counts['counted']} instruction counts compared: {counts['count_regressions']} more, "
                     f"{counts['count_improvements']} fewer, {counts['count_unchanged']} unchanged, "
                     f"{counts['count_unstable']} unstable")
    parts.append(f"{counts['deterministic_changes']} deterministic changes")
    unmatched = counts["new"] + counts["gone"] + counts["not_compared"]
    if unmatched:
        parts.append(f"{unmatched} other cases not compared")
    return [f"{counts['compared']} cases compared. " + "; ".join(parts) + "."]


def _notes(lines: list[str]) -> list[str]:
    return [line for text in lines for line in (text, "")]


def flagged_cases(verdict: dict[str, Any]) -> list[str]:
    """The cases the gate flags: slower, more instructions, or a deterministic figure changed."""
    timing, instructions = verdict["timing"], verdict["instructions"]
    found = [*timing.loc[timing["verdict"] == "regression", "case_id"],
             *instructions.loc[instructions["verdict"] == "regression", "case_id"],
             *verdict["deterministic"].get("case_id", [])]
    return list(dict.fromkeys(found))


def _traces_lines(traces: GateTraces | None) -> list[str]:
    if traces is None:
        return []
    lines = ["### Where the flagged cases changed (profiler traces)", ""]
    if traces.note:
        return lines + [traces.note, ""]
    lines += ["Per flagged case profiled on both sides, the operators whose self time per step changed most, "
              "then those whose calls per step changed (`nox -s trace-diff -- BASE CURRENT` lists every case).", ""]
    return lines + diff_markdown(traces.diff, top=GATE_TOP, level=4)


def markdown(verdict: dict[str, Any], traces: GateTraces | None = None) -> str:
    """gate.md; ``traces``: the trace diff of the flagged cases, when both sides were profiled."""
    counts, timing, det = verdict["counts"], verdict["timing"], verdict["deterministic"]
    cases, instructions = verdict["cases"], verdict["instructions"]
    status = "✅ pass" if verdict["passed"] else "❌ fail"
    lines = [f"## blitzbench gate: {status}", "", *_summary(counts), ""]
    for kind, (heading, text) in CASE_HEADINGS.items():
        rows = cases[cases["kind"] == kind]
        if not rows.empty:
            allowed = " Allowed by --allow-missing." if kind == "lost" and verdict["config"]["allow_missing"] else ""
            lines += [f"### {heading}", "", text + allowed, "", _case_table(rows), ""]
    normalized = bool(verdict["config"].get("normalized"))
    rows = timing[timing["verdict"] == "regression"]
    if not rows.empty:
        lines += ["### Regressions", "", _timing_table(rows, normalized), "", *_notes(_against_the_grain(rows))]
    rows = timing[timing["verdict"] == "cannot_tell"]
    if not rows.empty:
        lines += _cannot_tell_lines(rows)
    rows = instructions[instructions["verdict"] == "regression"]
    if not rows.empty:
        lines += ["### More instructions", "", "Instructions per call of the timed step (valgrind), beyond each "
                  "case's count threshold; no significance test: the counts repeat.", "", _count_table(rows), ""]
        for case_id, top in zip(rows["case_id"], rows["top"]):
            if top:
                lines += [f"Functions that grew most in `{case_id}` (per call; – : not among that side's "
                          "largest):", "", _grown_table(top), ""]
    if not det.empty:
        lines += ["### Deterministic changes", "",
                  "Gated apart from wall time: these do not depend on noise.", "",
                  pd.DataFrame({"case": det["case_id"], "figure": det["figure"],
                                "baseline": det["baseline"].map(fmt.number), "current": det["current"].map(fmt.number),
                                "tolerance": [fmt.short_percent(t) for t in det["tolerance"]]}
                               ).to_markdown(index=False), ""]
    lines += _traces_lines(traces)
    rows = timing[timing["verdict"] == "improvement"]
    if not rows.empty:
        lines += ["### Improvements", "", _timing_table(rows, normalized), "", *_notes(_against_the_grain(rows))]
    rows = instructions[instructions["verdict"] == "improvement"]
    if not rows.empty:
        lines += ["### Fewer instructions", "", _count_table(rows), ""]
    rows = instructions[instructions["verdict"] == "unstable"]
    if not rows.empty:
        lines += ["### Unstable instruction counts (not gated)", "",
                  f"The repeats of these cases spread more than {fmt.short_percent(verdict['config']['count_stability'])}"
                  " on a side: their counts are not judged.", "", _count_table(rows), ""]
    rows = cases[cases["kind"].isin(list(NOT_COMPARED))]
    if not rows.empty:
        lines += ["### Not compared", "", "Cases on one side only, or not measured on the base: listed, not gated.",
                  "", _case_table(rows, why=True), ""]
    unchanged = timing[timing["verdict"] == "unchanged"]
    if not unchanged.empty:
        lines += [f"<details><summary>{len(unchanged)} unchanged cases (with the smallest slowdown each "
                  "could have detected)</summary>", "", _timing_table(unchanged, normalized), "", "</details>", ""]
    rows = instructions[instructions["verdict"] == "unchanged"]
    if not rows.empty:
        lines += [f"<details><summary>{len(rows)} unchanged instruction counts</summary>", "",
                  _count_table(rows), "", "</details>", ""]
    cfg = verdict["config"]
    if counts["timed"]:
        lines += [f"Threshold {fmt.percent(cfg['threshold'], 0)} (per-case overrides: "
                  f"{len(cfg['case_thresholds'])}, noise floors: {cfg['noise_floor_cases']}), α = {cfg['alpha']}, "
                  f"{cfg['test']}."]
    if counts["counted"]:
        lines += [f"Instruction count threshold {fmt.short_percent(cfg['count_threshold'])} (per-case overrides: "
                  f"{len(cfg['case_count_thresholds'])}), stability {fmt.short_percent(cfg['count_stability'])}."]
    if not timing.empty:
        runs = timing[["runs_base", "runs_cur"]].max()
        if runs.max() > 1:
            how = "the fastest run of each case" if cfg.get("aggregate") == "best" else "all their rounds pooled"
            lines += [f"Up to {int(runs['runs_base'])} baseline and {int(runs['runs_cur'])} current runs per case: "
                      f"{how}."]
    for note in verdict.get("notes", []):
        lines += ["", f"> {note}"]
    return "\n".join(lines) + "\n"


def to_json(verdict: dict[str, Any]) -> dict[str, Any]:
    records = lambda df: [plain_row(r) for r in df.to_dict("records")]  # noqa: E731
    cases = verdict["cases"]
    by_kind = {kind: records(cases[cases["kind"] == kind]) for kind in CASE_KINDS}
    return dict(passed=verdict["passed"], counts=verdict["counts"], config=verdict["config"],
                notes=verdict.get("notes", []), warnings=verdict.get("warnings", []),
                run_shift=verdict.get("run_shift"), **by_kind,
                timing=records(verdict["timing"]), deterministic=records(verdict["deterministic"]),
                instructions=records(verdict["instructions"]))
