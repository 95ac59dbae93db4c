"""What moved in the history: a case's median *shifted* between consecutive runs when the
two 95% intervals of the medians are disjoint and the median moved by at least ``MIN_SHIFT``
(``reports.stats.shifted``). Not the gate's test (regressions and improvements: Mann-Whitney,
Holm, threshold), hence another name. Pure functions: DataFrames in, DataFrames out."""

from __future__ import annotations

import math

import pandas as pd

from bench.schema.status import Status

from .. import format as fmt
from ..stats import ci_columns, shifted
from .store import MAX_TIME, RUN_KIND

MIN_SHIFT = 0.05  # a median moving less than 5% is not marked, however certain
SHIFTS = ("slower", "faster")  # ▲ and ▼ on the history page


def comparable(history: pd.DataFrame) -> list[str]:
    """The columns two runs must agree on to be compared: the case, and where recorded the
    run's kind (bench, profile, count) and pytest-benchmark's max time per case."""
    return ["case_id", *(c for c in (RUN_KIND, MAX_TIME) if c in history)]


def mark_shifts(history: pd.DataFrame, min_shift: float = MIN_SHIFT) -> pd.DataFrame:
    """Timed rows with their 95% CI, ``vs_previous`` (the median's relative move since the
    case's previous timed run of the same kind and max time) and ``shift``: ``"slower"``/
    ``"faster"`` where it shifted, else ``""``. A profile run is never compared with a bench run."""
    rows = history[(history["status"] == Status.OK.value) & history["median_s"].notna()].reset_index(drop=True)
    rows = pd.concat([rows, ci_columns(rows)], axis="columns")
    rows["shift"] = ""
    rows["vs_previous"] = math.nan
    for _, group in rows.groupby(comparable(rows), sort=False, dropna=False):
        previous = None
        for index, row in group.iterrows():
            current = (row["median_s"], row["ci_low_s"], row["ci_high_s"])
            if previous is not None:
                rows.loc[index, "vs_previous"] = current[0] / previous[0] - 1
                if shifted(previous, current, min_shift):
                    rows.loc[index, "shift"] = SHIFTS[0] if current[0] > previous[0] else SHIFTS[1]
            previous = current
    rows["series"] = series(rows)
    return rows


def shifts_table(marked: pd.DataFrame) -> pd.DataFrame:
    """The shifts: run, case, median before and after, how far it moved."""
    rows = []
    for _, group in marked.groupby(comparable(marked), sort=False, dropna=False):
        before = group["median_s"].shift(1)
        hit = group["shift"] != ""
        for (_, row), prev in zip(group[hit].iterrows(), before[hit]):
            rows.append({"run": row["run"], "case_id": row["case_id"], "series": row.get("series", row["case_id"]),
                         "before_s": prev, "after_s": row["median_s"], "moved": row["vs_previous"]})
    return pd.DataFrame(rows, columns=["run", "case_id", "series", "before_s", "after_s", "moved"])


def latest_table(marked: pd.DataFrame) -> pd.DataFrame:
    """Per case (per line of the history page, ``series``): runs measured, the latest median
    with its CI, the move since the run before."""
    key = "series" if "series" in marked else "case_id"
    grouped = marked.groupby(key, sort=False)
    last = grouped.tail(1).set_index(key)
    return pd.DataFrame({
        "runs": grouped["run"].count(),
        "median_s": last["median_s"], "ci_low_s": last["ci_low_s"], "ci_high_s": last["ci_high_s"],
        "vs_previous": last["vs_previous"], "shift": last["shift"],
    }).rename_axis("case_id").reset_index()


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
    for name, column in (("kind", RUN_KIND), ("max_time_s", MAX_TIME), ("git_commit", "git_commit"),
                         ("torch_version", "torch_version")):
        table[name] = grouped[column].agg(first) if column in history else None
    return table.reset_index()


def series(marked: pd.DataFrame) -> pd.Series:
    """Per row, the line it belongs to on the history page: its case, and where the history
    holds runs of another kind or max time, those (a profile run's line is not a bench run's)."""
    keys = comparable(marked)[1:]
    if not keys or len(marked[keys].drop_duplicates()) <= 1:
        return marked["case_id"]
    return pd.Series([f"{row['case_id']} ({_settings(row, keys)})" for _, row in marked.iterrows()],
                     index=marked.index)


def _settings(row: pd.Series, keys: list[str]) -> str:
    kind = row.get(RUN_KIND)
    max_time = row.get(MAX_TIME)
    text = str(kind) if isinstance(kind, str) else "bench"
    if isinstance(max_time, float) and not math.isnan(max_time):
        text += f", max time {fmt.with_unit(max_time, fmt.TIME_UNITS)}"
    return text
