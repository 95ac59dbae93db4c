"""What moved in the history: a case's median *shifted* between consecutive runs when the
two 95% intervals of the medians are disjoint and the median moved by at least ``MIN_SHIFT``
(``reports.stats.shifted``). Not the gate's test (regressions and improvements: Mann-Whitney,
Holm, threshold), hence another name. Pure functions: DataFrames in, DataFrames out."""

from __future__ import annotations

import math

import pandas as pd

from bench.faults import Status

from ..stats import ci_columns, shifted

MIN_SHIFT = 0.05  # a median moving less than 5% is not marked, however certain
SHIFTS = ("slower", "faster")  # ▲ and ▼ on the history page


def mark_shifts(history: pd.DataFrame, min_shift: float = MIN_SHIFT) -> pd.DataFrame:
    """Measured rows with their 95% CI, ``vs_previous`` (the median's relative move since the
    case's previous measured run) and ``shift``: ``"slower"``/``"faster"`` where it shifted, else ``""``."""
    rows = history[history["status"] == Status.OK.value].reset_index(drop=True)
    rows = pd.concat([rows, ci_columns(rows)], axis="columns")
    rows["shift"] = ""
    rows["vs_previous"] = math.nan
    for _, group in rows.groupby("case_id", sort=False):
        previous = None
        for index, row in group.iterrows():
            current = (row["median_s"], row["ci_low_s"], row["ci_high_s"])
            if previous is not None:
                rows.loc[index, "vs_previous"] = current[0] / previous[0] - 1
                if shifted(previous, current, min_shift):
                    rows.loc[index, "shift"] = SHIFTS[0] if current[0] > previous[0] else SHIFTS[1]
            previous = current
    return rows


def shifts_table(marked: pd.DataFrame) -> pd.DataFrame:
    """The shifts: run, case, median before and after, how far it moved."""
    rows = []
    for _, group in marked.groupby("case_id", sort=False):
        before = group["median_s"].shift(1)
        hit = group["shift"] != ""
        for (_, row), prev in zip(group[hit].iterrows(), before[hit]):
            rows.append({"run": row["run"], "case_id": row["case_id"], "before_s": prev,
                         "after_s": row["median_s"], "moved": row["vs_previous"]})
    return pd.DataFrame(rows, columns=["run", "case_id", "before_s", "after_s", "moved"])


def latest_table(marked: pd.DataFrame) -> pd.DataFrame:
    """Per case: runs measured, the latest median with its CI, the move since the run before."""
    grouped = marked.groupby("case_id", sort=False)
    last = grouped.tail(1).set_index("case_id")
    return pd.DataFrame({
        "runs": grouped["run"].count(),
        "median_s": last["median_s"], "ci_low_s": last["ci_low_s"], "ci_high_s": last["ci_high_s"],
        "vs_previous": last["vs_previous"], "shift": last["shift"],
    }).reset_index()


def runs_table(history: pd.DataFrame) -> pd.DataFrame:
    """One row per run: when, git commit, torch, how many cases."""
    def first(values: pd.Series) -> object:
        values = values.dropna()
        return values.iloc[0] if len(values) else None

    grouped = history.groupby("run", sort=False)  # in the order the runs started
    table = pd.DataFrame({
        "cases": grouped["case_id"].count(),
        "measured": grouped["status"].agg(lambda s: int((s == Status.OK.value).sum())),
    })
    for column in ("git_commit", "torch_version"):
        table[column] = grouped[column].agg(first) if column in history else None
    return table.reset_index()
