"""The performance gate: compare two result sets case by case; fail on real slowdowns only.

A timing change counts only when it is both larger than a threshold (default 5%; per case
or pattern overridable; never below the case's calibrated noise floor) and statistically
significant on the raw round times: a one-sided Mann-Whitney U test, Holm-corrected for the
number of cases compared. The ratio's 95% interval combines the order-statistic intervals of
the two medians. Deterministic figures (FLOPs, parameters, peak CUDA memory, graphs, graph
breaks, recompiles, operator and kernel counts) are compared on their own, exactly or with a
tight tolerance. Pure functions: DataFrames in, DataFrames and dicts out.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.faults import Status

from ..format import percent, relative
from ..schema import deterministic
from ..stats import holm, mann_whitney, noise_floors, ratio_interval, run_shift

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
# Fields whose difference makes two environments incomparable for a gate.
ENV_FIELDS = ("torch_version", "gpu_name", "cpu_model")


class GateInputError(ValueError):
    """The inputs cannot be compared (exit 2); the message says why."""


@dataclass
class GateConfig:
    threshold: float = DEFAULT_THRESHOLD
    case_thresholds: dict[str, float] = field(default_factory=dict)  # fnmatch pattern -> threshold
    noise_floor: dict[str, float] = field(default_factory=dict)  # case_id -> relative floor
    alpha: float = DEFAULT_ALPHA
    normalize: bool = False  # divide out the whole-run shift before comparing cases
    aggregate: str = "best"  # how several runs of a case on one side become one (AGGREGATES)

    def threshold_for(self, case_id: str) -> float:
        threshold = self.threshold
        for pattern, value in self.case_thresholds.items():
            if fnmatch.fnmatchcase(case_id, pattern):
                threshold = value  # the last matching pattern wins
        return max(threshold, self.noise_floor.get(case_id, 0.0))


AGGREGATES = ("best", "pool")


def combine_runs(df: pd.DataFrame, how: str = "best") -> pd.DataFrame:
    """One row per case when a side has several runs of it (interleaved base/head runs).

    ``best``: the run with the lowest median. Interference on a shared machine only ever adds
    time, and it comes in stretches of seconds that slow every case measured meanwhile (see
    tests/gate_study.py), so the fastest run is the one closest to the code's own speed: the
    advice of Python's ``timeit`` for repeats, applied to whole runs. ``pool``: every run's
    rounds together, which treats rounds of different runs as one sample.
    """
    if how not in AGGREGATES:
        raise GateInputError(f"unknown run aggregate {how!r}; choose from {', '.join(AGGREGATES)}")
    ok = df[df["status"] == Status.OK.value].reset_index(drop=True)  # runs concatenated repeat index labels
    if ok.empty or ok["case_id"].is_unique:
        return df.assign(runs_combined=1)
    if how == "pool":
        pooled = ok.groupby("case_id", sort=False)["times_s"].agg(lambda lists: [t for ts in lists for t in ts])
        combined = ok.drop_duplicates("case_id", keep="last").set_index("case_id")
        combined["times_s"] = pooled
        combined = combined.reset_index()
    else:
        medians = ok["times_s"].map(lambda ts: float(np.median(ts)))
        combined = ok.loc[medians.groupby(ok["case_id"], sort=False).idxmin()]
    combined = combined.assign(runs_combined=combined["case_id"].map(ok["case_id"].value_counts()))
    return pd.concat([combined, df[df["status"] != Status.OK.value]], ignore_index=True)


def common_cases(baseline: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Cases measured (status ok) in both, side by side with _base / _cur suffixes."""
    ok_b = baseline[baseline["status"] == Status.OK.value].drop_duplicates("case_id", keep="last")
    ok_c = current[current["status"] == Status.OK.value].drop_duplicates("case_id", keep="last")
    merged = ok_b.merge(ok_c, on="case_id", suffixes=("_base", "_cur"))
    if merged.empty:
        raise GateInputError(
            "no case measured in both result sets "
            f"(baseline: {len(ok_b)} cases, current: {len(ok_c)} cases)")
    return merged


def divide_out(merged: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """The current run's times divided by a run-wide ratio (for --normalize)."""
    scaled = merged.copy()
    scaled["times_s_cur"] = [list(np.asarray(t, dtype=float) / ratio) for t in merged["times_s_cur"]]
    return scaled


def compare_timing(merged: pd.DataFrame, config: GateConfig) -> pd.DataFrame:
    """One row per common case: medians, ratio and its interval, p-values, verdict."""
    rows = []
    for _, row in merged.iterrows():
        base = np.asarray(row["times_s_base"], dtype=float)
        cur = np.asarray(row["times_s_cur"], dtype=float)
        med_b, med_c = float(np.median(base)), float(np.median(cur))
        low, high = ratio_interval(base, cur)
        p_slower, p_faster = mann_whitney(base, cur, med_c / med_b)
        threshold = config.threshold_for(row["case_id"])
        rows.append(dict(
            case_id=row["case_id"], baseline_s=med_b, current_s=med_c, ratio=med_c / med_b,
            ratio_low=low, ratio_high=high, p_slower=p_slower, p_faster=p_faster,
            threshold=threshold, rounds_base=len(base), rounds_cur=len(cur),
            runs_base=int(row["runs_combined_base"]), runs_cur=int(row["runs_combined_cur"]),
            # A change can only be called once the interval clears 1: below that size, noise hides it.
            min_detectable=max(threshold, high - 1, 1 - low),
        ))
    table = pd.DataFrame(rows)
    table["p_slower_adj"] = holm(table["p_slower"].to_numpy())
    table["p_faster_adj"] = holm(table["p_faster"].to_numpy())
    slower = (table["ratio"] - 1 > table["threshold"]) & (table["p_slower_adj"] < config.alpha)
    faster = (1 - table["ratio"] > table["threshold"]) & (table["p_faster_adj"] < config.alpha)
    table["verdict"] = np.select([slower, faster], ["regression", "improvement"], "unchanged")
    table["p_value"] = np.where(table["ratio"] >= 1, table["p_slower_adj"], table["p_faster_adj"])
    return table.sort_values(["verdict", "ratio"], ascending=[True, False]).reset_index(drop=True)


def compare_deterministic(merged: pd.DataFrame) -> pd.DataFrame:
    """Every deterministic figure that changed beyond its tolerance, one row per case and figure."""
    rows = []
    for figure in deterministic():
        column, tolerance = figure.name, figure.tolerance
        b_col, c_col = f"{column}_base", f"{column}_cur"
        if b_col not in merged or c_col not in merged:
            continue
        for _, row in merged.iterrows():
            before, after = row[b_col], row[c_col]
            if not (_number(before) and _number(after)):
                continue
            if _changed(float(before), float(after), tolerance):
                rows.append(dict(case_id=row["case_id"], figure=column, baseline=before, current=after,
                                 tolerance=tolerance))
    return pd.DataFrame(rows, columns=["case_id", "figure", "baseline", "current", "tolerance"])


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and not math.isnan(float(value))


def _changed(before: float, after: float, tolerance: float) -> bool:
    if tolerance == 0:
        return before != after
    return abs(after - before) > tolerance * max(abs(before), 1e-12)


def check_environments(base_env: Mapping[str, Any], cur_env: Mapping[str, Any]) -> list[str]:
    """The comparability-breaking fields that differ: 'field: baseline != current'."""
    return [f"{key}: {base_env.get(key)!r} != {cur_env.get(key)!r}" for key in ENV_FIELDS
            if base_env.get(key) is not None and cur_env.get(key) is not None
            and base_env.get(key) != cur_env.get(key)]


def _whole_run_moved(shift: dict[str, Any] | None, threshold: float) -> bool:
    return shift is not None and abs(shift["ratio"] - 1) > threshold and shift["same_direction"] >= 0.75


def _shift_note(shift: dict[str, Any], normalize: bool) -> str:
    advice = ("Verdicts and changes below are relative to this shift (--normalize); times are as measured."
              if normalize else "Rerun base and head interleaved on one machine, or pass --normalize "
              "to judge each case relative to the shift.")
    return (f"The whole run moved: the median case changed by {relative(shift['ratio'] - 1)} and "
            f"{percent(shift['same_direction'], 0)} of the {shift['cases']} cases moved the same way. "
            "A shift of every case is often the machine (another process, CPU clocks, a slow process), "
            f"not the change. {advice}")


def gate(baseline: pd.DataFrame, current: pd.DataFrame, config: GateConfig | None = None) -> dict[str, Any]:
    """The verdict: timing table, deterministic changes, counts and whether the gate passes."""
    config = config or GateConfig()
    merged = common_cases(combine_runs(baseline, config.aggregate), combine_runs(current, config.aggregate))
    shift = run_shift(merged["times_s_base"].tolist(), merged["times_s_cur"].tolist())
    notes = [_shift_note(shift, config.normalize)] if _whole_run_moved(shift, config.threshold) else []
    normalized = config.normalize and shift is not None
    timing = compare_timing(divide_out(merged, shift["ratio"]) if normalized else merged, config)
    if normalized:  # verdicts and ratios relative to the shift; medians stay measured seconds
        timing["current_s"] *= shift["ratio"]
    if (timing["runs_base"] == 1).all() or (timing["runs_cur"] == 1).all():
        notes.append("One run on a side: on a shared machine a single run can be 20-70% off for a "
                     "stretch of cases; compare folders of 5-10 interleaved runs per side (README).")
    deterministic = compare_deterministic(merged)
    regressions = int((timing["verdict"] == "regression").sum())
    return dict(
        passed=regressions == 0 and deterministic.empty,
        timing=timing, deterministic=deterministic,
        counts=dict(compared=len(timing), regressions=regressions,
                    improvements=int((timing["verdict"] == "improvement").sum()),
                    unchanged=int((timing["verdict"] == "unchanged").sum()),
                    deterministic_changes=len(deterministic),
                    only_in_baseline=len(set(baseline["case_id"]) - set(current["case_id"])),
                    only_in_current=len(set(current["case_id"]) - set(baseline["case_id"]))),
        config=dict(threshold=config.threshold, case_thresholds=config.case_thresholds,
                    alpha=config.alpha, noise_floor_cases=len(config.noise_floor),
                    normalized=normalized, aggregate=config.aggregate,
                    test="one-sided Mann-Whitney U on raw rounds, Holm-corrected"),
        run_shift=shift, notes=notes,
    )


def noise_floor(runs: Sequence[pd.DataFrame], safety: float = 1.5, aggregate: str = "best") -> dict[str, float]:
    """Per case, from two or more result sets of the same code: the farthest apart any two of
    them landed (the change, or its 95% interval's far end), with a safety margin. A result set
    with several runs of a case counts as one, combined as the gate combines them, so the
    floors match a gate of that many runs per side. More sets catch more of the machine's noise."""
    if len(runs) < 2:
        raise GateInputError(f"calibration needs at least 2 runs of the same code, got {len(runs)}")
    merged = [common_cases(a, b) for a, b in
              itertools.combinations([combine_runs(run, aggregate) for run in runs], 2)]
    return noise_floors(((case_id, a, b) for m in merged
                         for case_id, a, b in zip(m["case_id"], m["times_s_base"], m["times_s_cur"])), safety)
