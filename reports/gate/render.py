"""Rendering of a gate verdict: Markdown for a pull-request comment, and a JSON document."""

from __future__ import annotations

from typing import Any

import pandas as pd

from .. import format as fmt
from ..format import plain_row, relative


def _timing_table(rows: pd.DataFrame) -> str:
    unit, scale = fmt.time_unit(pd.concat([rows["baseline_s"], rows["current_s"]]))
    view = pd.DataFrame({
        "case": rows["case_id"],
        f"baseline → current ({unit})": [f"{fmt.number(b / scale)} → {fmt.number(c / scale)}"
                                         for b, c in zip(rows["baseline_s"], rows["current_s"])],
        "change (95% CI)": [f"{relative(r - 1)} ({relative(lo - 1)} … {relative(hi - 1)})"
                            for r, lo, hi in zip(rows["ratio"], rows["ratio_low"], rows["ratio_high"])],
        "p (Holm)": [fmt.p_value(p) for p in rows["p_value"]],
        "threshold": [fmt.percent(t) for t in rows["threshold"]],
        "min. detectable": [fmt.percent(m) for m in rows["min_detectable"]],
    })
    return view.to_markdown(index=False)


def markdown(verdict: dict[str, Any]) -> str:
    counts, timing, det = verdict["counts"], verdict["timing"], verdict["deterministic"]
    status = "✅ pass" if verdict["passed"] else "❌ fail"
    lines = [f"## blitzbench gate: {status}", "",
             f"{counts['compared']} cases compared: {counts['regressions']} slower, "
             f"{counts['improvements']} faster, {counts['unchanged']} unchanged; "
             f"{counts['deterministic_changes']} deterministic changes.", ""]
    for verdict_name, heading in (("regression", "Regressions"), ("improvement", "Improvements")):
        rows = timing[timing["verdict"] == verdict_name]
        if not rows.empty:
            lines += [f"### {heading}", "", _timing_table(rows), ""]
    if not det.empty:
        lines += ["### Deterministic changes", "",
                  "Gated apart from wall time: these do not depend on noise.", "",
                  pd.DataFrame({"case": det["case_id"], "figure": det["figure"],
                                "baseline": det["baseline"].map(fmt.number), "current": det["current"].map(fmt.number),
                                "tolerance": [fmt.short_percent(t) for t in det["tolerance"]]}
                               ).to_markdown(index=False), ""]
    unchanged = timing[timing["verdict"] == "unchanged"]
    if not unchanged.empty:
        lines += [f"<details><summary>{len(unchanged)} unchanged cases (with the smallest slowdown each "
                  "could have detected)</summary>", "", _timing_table(unchanged), "", "</details>", ""]
    cfg = verdict["config"]
    lines += [f"Threshold {fmt.percent(cfg['threshold'], 0)} (per-case overrides: {len(cfg['case_thresholds'])}, "
              f"noise floors: {cfg['noise_floor_cases']}), α = {cfg['alpha']}, {cfg['test']}."]
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
    return dict(passed=verdict["passed"], counts=verdict["counts"], config=verdict["config"],
                notes=verdict.get("notes", []), run_shift=verdict.get("run_shift"),
                timing=records(verdict["timing"]), deterministic=records(verdict["deterministic"]))
