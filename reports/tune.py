"""The tuning summary: ``python -m reports.tune RUN_DIR --seed CASE_ID``.

``python -m bench tune`` measures a grid of configurations of one model's phase into a run
folder, then runs this to read it: the configurations sorted by median (with its 95% CI), the
fastest, and each one's speedup over the seed's configuration with the gate's 95% interval
(``reports.stats.ratio_interval`` on both sides' raw rounds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from . import format as fmt
from .load import ResultsError, load
from .run.tables import not_measured, timed
from .stats import ratio_interval

# The settings a tuning grid varies, as table columns (case field -> heading).
SETTINGS = {"optimizer": "optimizer", "amp": "amp", "memory_format": "memory format", "tf32": "tf32",
            "cudnn_benchmark": "cudnn benchmark"}


def mode_label(row: pd.Series) -> str:
    """``eager``, ``compile`` (the default mode) or ``compile max-autotune``."""
    if row["mode"] != "compile":
        return str(row["mode"])
    return "compile" if row.get("compile_mode", "default") == "default" else f"compile {row['compile_mode']}"


def tune_table(df: pd.DataFrame, seed_id: str) -> pd.DataFrame:
    """The timed configurations, fastest first: median, its CI, and the speedup over the seed
    (``seed median / median``) with its 95% interval; NaN speedups when the seed has no timing."""
    rows = timed(df).sort_values("median_s", kind="stable").reset_index(drop=True)
    seed = rows[rows["case_id"] == seed_id]
    seed_times = np.asarray(seed["times_s"].iloc[0], dtype=float) if len(seed) else np.array([])
    speedups, lows, highs = [], [], []
    for median, times in zip(rows["median_s"], rows["times_s"]):
        times = np.asarray(times if isinstance(times, (list, tuple)) else [], dtype=float)
        if len(seed) and len(times):
            low, high = ratio_interval(times, seed_times)  # median(seed) / median(this one)
            speedups.append(float(seed["median_s"].iloc[0]) / median)
        else:
            low = high = np.nan
            speedups.append(np.nan)
        lows.append(low)
        highs.append(high)
    return rows.assign(mode_label=[mode_label(r) for _, r in rows.iterrows()], speedup=speedups,
                       speedup_low=lows, speedup_high=highs, is_seed=rows["case_id"] == seed_id)


def table_text(table: pd.DataFrame) -> str:
    """The sorted table as Markdown; settings that are the same in every row are left out."""
    unit, medians, cis = fmt.time_with_ci(table["median_s"], table["median_ci_low_s"], table["median_ci_high_s"])
    view = pd.DataFrame({"#": [fmt.number(i + 1) for i in range(len(table))], "mode": table["mode_label"]})
    for field, heading in SETTINGS.items():
        if field in table and table[field].astype(str).nunique() > 1:
            view[heading] = [_setting(v) for v in table[field]]
    view[f"median ({unit})"] = medians
    view[f"95% CI ({unit})"] = cis
    view["vs seed (95% interval)"] = [fmt.speedup_interval(v, lo, hi) for v, lo, hi in
                                      zip(table["speedup"], table["speedup_low"], table["speedup_high"])]
    view[""] = ["seed" if s else ("noisy" if n is True else "") for s, n in zip(table["is_seed"], table["noisy"])]
    return view.to_markdown(index=False)


def _setting(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "on" if value else "off"
    return "-" if fmt.is_missing(value) else str(value)


def describe(row: pd.Series) -> str:
    """A configuration in words: ``compile max-autotune, adam_fused, amp bfloat16, contiguous``."""
    parts = [row["mode_label"], *([row["optimizer"]] if not fmt.is_missing(row["optimizer"]) else []),
             f"amp {row['amp']}", str(row["memory_format"])]
    parts += ["tf32"] if row.get("tf32") is True else []
    parts += ["cudnn.benchmark"] if row.get("cudnn_benchmark") is True else []
    return ", ".join(parts)


def summary(df: pd.DataFrame, seed_id: str) -> tuple[str, bool]:
    """The summary text, and whether it names a fastest configuration with its speedup."""
    table = tune_table(df, seed_id)
    lines: list[str] = []
    if table.empty:
        lines.append("no configuration was measured")
    else:
        lines += [table_text(table), ""]
        best = table.iloc[0]
        lines.append(f"fastest: {best['case_id']} ({describe(best)}), median "
                     f"{fmt.with_unit(best['median_s'], fmt.TIME_UNITS)} per call")
    complete = not table.empty and bool(table["is_seed"].any())
    if complete:
        best = table.iloc[0]
        seed = table[table["is_seed"]].iloc[0]
        lines.append("speedup over the seed's configuration "
                     f"({seed_id}: {describe(seed)}): "
                     + fmt.speedup_interval(best["speedup"], best["speedup_low"], best["speedup_high"])
                     + (" (the seed's configuration is the fastest)" if best["is_seed"] else ""))
    elif not table.empty:
        lines.append(f"the seed's configuration {seed_id} was not measured: no speedup")
    missing = not_measured(df)
    if not missing.empty:
        lines.append(f"not measured ({fmt.count(len(missing), 'configuration')}):")
        lines += [f"  {r['case_id']}: {r['status']}: {r['reason']}" for _, r in missing.iterrows()]
    return "\n".join(lines), complete


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the run folder python -m bench tune wrote")
    parser.add_argument("--seed", required=True, help="the case id of the seed's configuration")
    args = parser.parse_args(argv)
    try:
        df = load(args.run)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text, complete = summary(df, args.seed)
    print(text)
    print(f"results: {args.run}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
