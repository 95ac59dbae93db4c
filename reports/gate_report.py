"""Rendering of a gate verdict: Markdown for a pull-request comment, and a JSON document."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .render import _fmt, time_unit


def _pct(value: float) -> str:
    return f"{100 * value:+.1f}%"


def _timing_table(rows: pd.DataFrame) -> str:
    unit, scale = time_unit(pd.concat([rows["baseline_s"], rows["current_s"]]))
    view = pd.DataFrame({
        "case": rows["case_id"],
        f"baseline → current ({unit})": [f"{_fmt(b / scale)} → {_fmt(c / scale)}"
                                         for b, c in zip(rows["baseline_s"], rows["current_s"])],
        "change (95% CI)": [f"{_pct(r - 1)} ({_pct(lo - 1)} … {_pct(hi - 1)})"
                            for r, lo, hi in zip(rows["ratio"], rows["ratio_low"], rows["ratio_high"])],
        "p (Holm)": [f"{p:.1e}" for p in rows["p_value"]],
        "threshold": [f"{100 * t:.1f}%" for t in rows["threshold"]],
        "min. detectable": [f"{100 * m:.1f}%" for m in rows["min_detectable"]],
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
                                "baseline": det["baseline"].map(_fmt), "current": det["current"].map(_fmt),
                                "tolerance": [f"{100 * t:g}%" for t in det["tolerance"]]}
                               ).to_markdown(index=False), ""]
    unchanged = timing[timing["verdict"] == "unchanged"]
    if not unchanged.empty:
        lines += [f"<details><summary>{len(unchanged)} unchanged cases (with the smallest slowdown each "
                  "could have detected)</summary>", "", _timing_table(unchanged), "", "</details>", ""]
    cfg = verdict["config"]
    lines += [f"Threshold {100 * cfg['threshold']:.0f}% (per-case overrides: {len(cfg['case_thresholds'])}, "
              f"noise floors: {cfg['noise_floor_cases']}), α = {cfg['alpha']}, {cfg['test']}."]
    runs = timing[["runs_base", "runs_cur"]].max()
    if runs.max() > 1:
        how = "the fastest run of each case" if cfg.get("aggregate") == "best" else "all their rounds pooled"
        lines += [f"Up to {int(runs['runs_base'])} baseline and {int(runs['runs_cur'])} current runs per case: "
                  f"{how}."]
    for note in verdict.get("notes", []):
        lines += ["", f"> {note}"]
    return "\n".join(lines) + "\n"


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _clean(value.item())
    return value


def to_json(verdict: dict[str, Any]) -> dict[str, Any]:
    records = lambda df: [{k: _clean(v) for k, v in r.items()} for r in df.to_dict("records")]  # noqa: E731
    return dict(passed=verdict["passed"], counts=verdict["counts"], config=verdict["config"],
                notes=verdict.get("notes", []), run_shift=verdict.get("run_shift"),
                timing=records(verdict["timing"]), deterministic=records(verdict["deterministic"]))
