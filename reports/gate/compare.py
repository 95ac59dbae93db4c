"""The performance gate: compare two result sets case by case; fail on real slowdowns, and on
everything it could not check.

A case the base measured (status ok) fails the gate when the head ends it in a failure
(``bench.faults.Status.failed``: compile_error, oom, error, non_finite, invalid, or a status
blitzbench does not know), and when the head lost it (absent, or skipped/unsupported there: not
checked) unless ``allow_missing``. Cases new on the head, or not ok on the base, are listed.

A timing change counts only when it is both larger than a threshold (default 5%; per case
or pattern overridable) and than the case's noise, and statistically significant on the raw
round times: a one-sided Mann-Whitney U test, Holm-corrected for the number of cases compared.
The ratio's 95% interval combines the order-statistic intervals of the two medians. A case's
noise (``reports.stats.case_noise``: its calibrated floor, its interval, a drift of its rounds)
above its threshold makes its verdict ``cannot_tell`` at this run count, which fails the gate
like any case it could not check. ``normalize`` divides out the run-wide shift only when that
shift is within the threshold (a larger one is set by the cases that changed). Deterministic
figures (FLOPs, parameters, peak CUDA memory, graphs, graph breaks, recompiles, operator and
kernel counts) are compared on their own, exactly or with a tight tolerance; instruction counts
(count runs, valgrind) with a threshold of their own, a case whose count repeats disagree being
unstable and not gated. Case patterns match literally except ``*`` and ``?`` (``match_case``).
Pure functions: DataFrames in, DataFrames and dicts out.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from bench.schema.status import Status

from ..format import percent, relative, short_percent
from ..schema import deterministic, get
from ..stats import (MIN_CASES_FOR_SHIFT, case_noise, holm, mann_whitney, noise_floors, ratio_interval, run_shift,
                     runs_needed)

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.05
# Fields whose difference makes two environments incomparable for a gate.
ENV_FIELDS = ("torch_version", "gpu_name", "cpu_model")
# Instruction counts (bench's counts pass, contract 7 of round 2): the figure judged, the spread
# of its repeats (a case above ``count_stability`` is unstable, not gated), the functions with
# the most instructions per call, and the fields that must agree for counts to compare.
COUNT_FIGURE, COUNT_SPREAD, COUNT_TOP = "instructions", "instructions_spread", "instruction_top"
COUNT_ENV_FIELDS = ("valgrind_version", "valgrind_isa", "count_library_isa", "torch_version",
                    "python_version")
DEFAULT_COUNT_THRESHOLD = 0.01  # when ``instructions`` is not declared (its declaration says 1%)
# Half the count threshold: a case whose repeats spread that much cannot be judged at 1%. In
# 270 cross-process A/A comparisons (90 cases, 3 runs) the repeats spread up to 0.27% (small
# optimizer steps: ~0.3 M instructions per call) and the runs differed by at most 0.13%; 0.1%
# left 10 of the 90 cases ungated.
DEFAULT_COUNT_STABILITY = 0.005
TOP_FUNCTIONS = 5


class GateInputError(ValueError):
    """The inputs cannot be compared (exit 2); the message says why."""


@functools.lru_cache(maxsize=256)
def _case_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern),
                      re.DOTALL)


def match_case(pattern: str, case_id: str) -> bool:
    """Whether a case id matches a pattern: literally, except ``*`` (any run of characters) and
    ``?`` (one character). Brackets are literal, so ``train_step[lenet*]`` matches
    ``train_step[lenet-adam-cpu-eager-b64]`` (fnmatch would read ``[lenet*]`` as a class)."""
    return _case_regex(pattern).fullmatch(case_id) is not None


def _override(patterns: Mapping[str, float], case_id: str, default: float) -> float:
    value = default
    for pattern, override in patterns.items():
        if match_case(pattern, case_id):
            value = override  # the last matching pattern wins
    return value


@dataclass
class GateConfig:
    threshold: float = DEFAULT_THRESHOLD
    case_thresholds: dict[str, float] = field(default_factory=dict)  # match_case pattern -> threshold
    noise_floor: dict[str, float] = field(default_factory=dict)  # case_id -> relative A/A floor (noise)
    alpha: float = DEFAULT_ALPHA
    normalize: bool = False  # divide out the whole-run shift before comparing cases
    aggregate: str = "best"  # how several runs of a case on one side become one (AGGREGATES)
    allow_missing: bool = False  # a case the base measured and the head did not: listed, not failed
    # Instruction counts: None is the declared tolerance of the ``instructions`` figure (1%).
    count_threshold: float | None = None
    case_count_thresholds: dict[str, float] = field(default_factory=dict)  # pattern -> threshold
    count_stability: float = DEFAULT_COUNT_STABILITY  # larger spread of the repeats: not gated

    def threshold_for(self, case_id: str) -> float:
        """The smallest change that matters for a case (its floor is noise, not a threshold)."""
        return _override(self.case_thresholds, case_id, self.threshold)

    def count_threshold_for(self, case_id: str) -> float:
        return _override(self.case_count_thresholds, case_id, self.default_count_threshold())

    def default_count_threshold(self) -> float:
        if self.count_threshold is not None:
            return self.count_threshold
        declared = get(COUNT_FIGURE)
        return declared.tolerance if declared is not None and declared.tolerance else DEFAULT_COUNT_THRESHOLD


AGGREGATES = ("best", "pool")


def _has_rounds(times: Any) -> bool:
    return isinstance(times, (list, tuple, np.ndarray)) and len(times) > 0


def combine_runs(df: pd.DataFrame, how: str = "best") -> pd.DataFrame:
    """One row per case when a side has several runs of it (interleaved base/head runs).

    ``best``: the run with the lowest median. Interference on a shared machine only ever adds
    time, and it comes in stretches of seconds that slow every case measured meanwhile (see
    tests/gate_study.py), so the fastest run is the one closest to the code's own speed: the
    advice of Python's ``timeit`` for repeats, applied to whole runs. ``pool``: every run's
    rounds together, which treats rounds of different runs as one sample. A case without
    rounds on a side (a count run's rows) keeps its last row there.
    """
    if how not in AGGREGATES:
        raise GateInputError(f"unknown run aggregate {how!r}; choose from {', '.join(AGGREGATES)}")
    ok = df[df["status"] == Status.OK.value].reset_index(drop=True)  # runs concatenated repeat index labels
    if ok.empty or ok["case_id"].is_unique:
        return df.assign(runs_combined=1)
    runs = ok["case_id"].value_counts()
    timed_rows = ok["times_s"].map(_has_rounds)
    timed, untimed = ok[timed_rows].reset_index(drop=True), ok[~timed_rows]
    untimed = untimed[~untimed["case_id"].isin(timed["case_id"])].drop_duplicates("case_id", keep="last")
    if timed.empty or timed["case_id"].is_unique:
        combined = timed
    elif how == "pool":
        pooled = timed.groupby("case_id", sort=False)["times_s"].agg(lambda lists: [t for ts in lists for t in ts])
        combined = timed.drop_duplicates("case_id", keep="last").set_index("case_id")
        combined["times_s"] = pooled
        combined = combined.reset_index()
    else:
        medians = timed["times_s"].map(lambda ts: float(np.median(ts)))
        combined = timed.loc[medians.groupby(timed["case_id"], sort=False).idxmin()]
    combined = pd.concat([combined, untimed])
    combined = combined.assign(runs_combined=combined["case_id"].map(runs))
    return pd.concat([combined, df[df["status"] != Status.OK.value]], ignore_index=True)


def common_cases(baseline: pd.DataFrame, current: pd.DataFrame, timed: bool = True) -> pd.DataFrame:
    """Cases measured (status ok, with rounds unless ``timed=False``) in both, side by side
    with _base / _cur suffixes."""
    def measured(df: pd.DataFrame) -> pd.DataFrame:
        ok = df[df["status"] == Status.OK.value]
        if timed:
            ok = ok[ok["times_s"].map(_has_rounds)]
        return ok.drop_duplicates("case_id", keep="last")

    ok_b, ok_c = measured(baseline), measured(current)
    merged = ok_b.merge(ok_c, on="case_id", suffixes=("_base", "_cur"))
    if merged.empty:
        raise GateInputError(
            f"no case measured{' with rounds' if timed else ''} in both result sets "
            f"(baseline: {len(ok_b)} cases, current: {len(ok_c)} cases)")
    return merged


# --- which cases were compared, and what happened to the others -------------------------

CASE_KINDS = ("failed", "lost", "new", "gone", "not_compared")
# Statuses on the head that mean "not checked" rather than "broken": the case did not run there.
NOT_RUN = (Status.SKIPPED.value, Status.UNSUPPORTED.value)


def is_failure(status: Any) -> bool:
    """A status a gate must not pass: ``Status.failed``, or a status blitzbench does not know."""
    try:
        return Status(status).failed
    except ValueError:
        return True


def _message(row: Mapping[str, Any]) -> str:
    for key in ("error", "invalid_reason"):
        value = row.get(key)
        if isinstance(value, (list, tuple)) and value:
            return "; ".join(map(str, value))
        if isinstance(value, str) and value:
            return value
    return ""


def side_status(df: pd.DataFrame, head: bool) -> dict[str, tuple[str, str]]:
    """Per case: ``(status, message)`` of a side with one or several runs. The base counts as
    measured when any run of a case is ok; the head as failed when any run of it failed (the
    last such run otherwise: its latest)."""
    rows = df.iloc[::-1]  # the latest run first among equals
    status = rows["status"]
    failure = status.map({s: is_failure(s) for s in status.unique()}).astype(bool)
    ok = status == Status.OK.value
    rank = np.select([failure, ok], [0, 1], 2) if head else np.select([ok, failure], [0, 1], 2)
    chosen = rows.iloc[np.argsort(rank, kind="stable")].drop_duplicates("case_id", keep="first")
    messages = [""] * len(chosen) if chosen["status"].eq(Status.OK.value).all() else \
        [_message(r) for r in chosen.to_dict("records")]
    found = {str(c): (str(s), m) for c, s, m in zip(chosen["case_id"], chosen["status"], messages)}
    return {str(c): found[str(c)] for c in df["case_id"].drop_duplicates()}  # in the side's order


def classify_cases(baseline: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """Every case not compared, and why: ``failed`` (ok on the base, a failure on the head),
    ``lost`` (ok on the base; absent, skipped or unsupported on the head), ``new`` (absent on
    the base), ``gone`` (absent on the head, not ok on the base), ``not_compared`` (on both
    sides, not ok on the base). ``failed`` fails the gate; ``lost`` too unless allowed."""
    base, cur = side_status(baseline, head=False), side_status(current, head=True)
    ok = Status.OK.value
    rows = []
    for case_id in [*base, *(c for c in cur if c not in base)]:
        (b_status, b_msg), (c_status, c_msg) = base.get(case_id, (None, "")), cur.get(case_id, (None, ""))
        if b_status == ok and c_status == ok:
            continue
        if b_status is None:
            kind = "new"
        elif b_status == ok:
            kind = "lost" if c_status is None or c_status in NOT_RUN else "failed"
        else:
            kind = "gone" if c_status is None else "not_compared"
        rows.append(dict(case_id=case_id, kind=kind, status_base=b_status, status_cur=c_status,
                         error=c_msg or b_msg))
    table = pd.DataFrame(rows, columns=["case_id", "kind", "status_base", "status_cur", "error"])
    order = table["kind"].map({k: i for i, k in enumerate(CASE_KINDS)})
    return table.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def divide_out(merged: pd.DataFrame, ratio: float) -> pd.DataFrame:
    """The current run's times divided by a run-wide ratio (for --normalize)."""
    scaled = merged.copy()
    scaled["times_s_cur"] = [list(np.asarray(t, dtype=float) / ratio) for t in merged["times_s_cur"]]
    return scaled


TIMING_COLUMNS = ["case_id", "baseline_s", "current_s", "ratio", "raw_ratio", "ratio_low", "ratio_high", "p_slower",
                  "p_faster", "threshold", "noise", "noise_source", "rounds_base", "rounds_cur", "runs_base",
                  "runs_cur", "runs_needed", "min_detectable", "p_slower_adj", "p_faster_adj", "verdict", "p_value",
                  "tokens_per_s_base", "tokens_per_s_cur", "mfu_base", "mfu_cur"]
# The verdicts of a timed case, in gate.md's order; ``cannot_tell``: its noise at this run count
# is above its threshold, so a change of that size could hide in it (or be made by it).
TIMING_VERDICTS = ("regression", "improvement", "cannot_tell", "unchanged")


def _timing_row(row: Mapping[str, Any], config: GateConfig) -> dict[str, Any]:
    """One case's medians, ratio and interval, p-values, threshold and noise (no verdict yet)."""
    base = np.asarray(row["times_s_base"], dtype=float)
    cur = np.asarray(row["times_s_cur"], dtype=float)
    med_b, med_c = float(np.median(base)), float(np.median(cur))
    low, high = ratio_interval(base, cur)
    p_slower, p_faster = mann_whitney(base, cur, med_c / med_b)
    threshold = config.threshold_for(row["case_id"])
    noise, source = case_noise(base, cur, config.noise_floor.get(row["case_id"], 0.0))
    runs = min(int(row["runs_combined_base"]), int(row["runs_combined_cur"]))
    return dict(
        case_id=row["case_id"], baseline_s=med_b, current_s=med_c, ratio=med_c / med_b, raw_ratio=med_c / med_b,
        ratio_low=low, ratio_high=high, p_slower=p_slower, p_faster=p_faster, threshold=threshold,
        noise=noise, noise_source=source, rounds_base=len(base), rounds_cur=len(cur),
        runs_base=int(row["runs_combined_base"]), runs_cur=int(row["runs_combined_cur"]),
        runs_needed=runs_needed(noise, threshold, runs) if noise > threshold else None,
        # Below its threshold a change does not matter; below its noise it cannot be told from noise.
        min_detectable=max(threshold, noise),
        # What transformer people read: the throughput and MFU at the medians compared here.
        tokens_per_s_base=_at_median(row, "tokens_per_s", "_base", med_b),
        tokens_per_s_cur=_at_median(row, "tokens_per_s", "_cur", med_c),
        mfu_base=_at_median(row, "peak_share", "_base", med_b), mfu_cur=_at_median(row, "peak_share", "_cur", med_c),
    )


def _at_median(row: Mapping[str, Any], figure: str, side: str, median_s: float) -> float | None:
    """A per-second figure of one side (tokens/s, MFU) at the median the gate compares (the
    side's runs pooled), from the value its row holds at the row's own median."""
    value, own = row.get(figure + side), row.get("median_s" + side)
    if value is None or own is None or pd.isna(value) or pd.isna(own) or not median_s:
        return None
    return float(value) * float(own) / median_s


def compare_timing(merged: pd.DataFrame, config: GateConfig) -> pd.DataFrame:
    """One row per common case: medians, ratio and its interval, p-values, noise, verdict.

    A change is called when it is larger than both the case's threshold and its noise, and
    significant; otherwise a case whose noise is above its threshold is ``cannot_tell``: the
    comparison could neither see a change of the threshold's size nor rule one out."""
    if merged.empty:
        return pd.DataFrame(columns=TIMING_COLUMNS)
    table = pd.DataFrame([_timing_row(row, config) for _, row in merged.iterrows()])
    table["p_slower_adj"] = holm(table["p_slower"].to_numpy())
    table["p_faster_adj"] = holm(table["p_faster"].to_numpy())
    slower = (table["ratio"] - 1 > table["min_detectable"]) & (table["p_slower_adj"] < config.alpha)
    faster = (1 - table["ratio"] > table["min_detectable"]) & (table["p_faster_adj"] < config.alpha)
    noisy = table["noise"] > table["threshold"]
    table["verdict"] = np.select([slower, faster, noisy], list(TIMING_VERDICTS[:3]), TIMING_VERDICTS[3])
    table["p_value"] = np.where(table["ratio"] >= 1, table["p_slower_adj"], table["p_faster_adj"])
    order = table["verdict"].map({v: i for i, v in enumerate(TIMING_VERDICTS)})
    return (table.assign(_order=order).sort_values(["_order", "ratio"], ascending=[True, False])
            .drop(columns="_order").reset_index(drop=True)[TIMING_COLUMNS])


def compare_deterministic(merged: pd.DataFrame) -> pd.DataFrame:
    """Every deterministic figure that changed beyond its tolerance, one row per case and figure
    (instruction counts apart: ``compare_counts`` judges them with their own thresholds)."""
    rows = []
    for figure in deterministic():
        column, tolerance = figure.name, figure.tolerance
        if column == COUNT_FIGURE:
            continue
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


def _top(value: Any) -> dict[str, float]:
    """``instruction_top`` as {function: instructions per call} (a list, or its JSON text)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    if not isinstance(value, (list, tuple)):
        return {}
    return {str(item["function"]): float(item["instructions"]) for item in value
            if isinstance(item, Mapping) and "function" in item and _number(item.get("instructions"))}


def grown_functions(before: Any, after: Any, limit: int = TOP_FUNCTIONS) -> list[dict[str, Any]]:
    """The functions whose instructions per call grew most, from each side's ``instruction_top``.
    A function outside a side's list counts there as 0 (``None`` in the row): the list holds
    only each side's largest."""
    b, a = _top(before), _top(after)
    rows = [dict(function=name, baseline=b.get(name), current=a.get(name),
                 change=a.get(name, 0.0) - b.get(name, 0.0)) for name in dict.fromkeys([*a, *b])]
    grown = sorted((r for r in rows if r["change"] > 0), key=lambda r: -r["change"])
    return grown[:limit]


COUNT_COLUMNS = ["case_id", "baseline", "current", "ratio", "threshold", "spread_base", "spread_cur", "verdict",
                 "top"]


def compare_counts(merged: pd.DataFrame, config: GateConfig) -> pd.DataFrame:
    """Instructions per call, case by case: a regression or improvement beyond the case's
    count threshold (no significance test: the count repeats), or ``unstable`` (not gated) when
    either side's repeats spread more than ``config.count_stability``. Regressions carry the
    functions that grew most (``top``)."""
    b_col, c_col = f"{COUNT_FIGURE}_base", f"{COUNT_FIGURE}_cur"
    if b_col not in merged or c_col not in merged:
        return pd.DataFrame(columns=COUNT_COLUMNS)
    rows = []
    for _, row in merged.iterrows():
        before, after = row[b_col], row[c_col]
        if not (_number(before) and _number(after)):
            continue
        before, after = float(before), float(after)
        spreads = [row.get(f"{COUNT_SPREAD}_{side}") for side in ("base", "cur")]
        spreads = [float(s) if _number(s) else math.nan for s in spreads]
        threshold = config.count_threshold_for(row["case_id"])
        ratio = after / before if before > 0 else (1.0 if after == before else math.inf)
        if any(s > config.count_stability for s in spreads if not math.isnan(s)):
            verdict = "unstable"
        elif ratio - 1 > threshold:
            verdict = "regression"
        elif 1 - ratio > threshold:
            verdict = "improvement"
        else:
            verdict = "unchanged"
        top = grown_functions(row.get(f"{COUNT_TOP}_base"), row.get(f"{COUNT_TOP}_cur")) \
            if verdict == "regression" else []
        rows.append(dict(case_id=row["case_id"], baseline=before, current=after, ratio=ratio, threshold=threshold,
                         spread_base=spreads[0], spread_cur=spreads[1], verdict=verdict, top=top))
    table = pd.DataFrame(rows, columns=COUNT_COLUMNS)
    return table.sort_values(["verdict", "ratio"], ascending=[True, False]).reset_index(drop=True)


def has_counts(df: pd.DataFrame) -> bool:
    """Whether a result set holds instruction counts (a count run)."""
    return COUNT_FIGURE in df and bool(df[COUNT_FIGURE].map(_number).any())


def environment_fields(baseline: pd.DataFrame, current: pd.DataFrame) -> tuple[str, ...]:
    """The environment fields that must agree: ``ENV_FIELDS``, and ``COUNT_ENV_FIELDS`` when
    both sides hold instruction counts."""
    if has_counts(baseline) and has_counts(current):
        return tuple(dict.fromkeys([*ENV_FIELDS, *COUNT_ENV_FIELDS]))
    return ENV_FIELDS


# A count run from before the library kernels were recorded let MKL and oneDNN choose (AVX2
# under valgrind); its GEMMs count ~3x fewer instructions than a run that chose SSE4.2, so the
# missing field reads as that choice, and the gate refuses the pair instead of flagging every case.
UNRECORDED_COUNT_ENV = {"count_library_isa": "unrecorded (MKL and oneDNN chose: AVX2 under valgrind)"}


def _env_value(env: Mapping[str, Any], key: str) -> Any:
    value = env.get(key)
    if value is None and env.get("run_kind") == "count":
        return UNRECORDED_COUNT_ENV.get(key)
    return value


def check_environments(base_env: Mapping[str, Any], cur_env: Mapping[str, Any],
                       fields: Sequence[str] = ENV_FIELDS) -> list[str]:
    """The comparability-breaking fields that differ: 'field: baseline != current'."""
    pairs = {key: (_env_value(base_env, key), _env_value(cur_env, key)) for key in fields}
    return [f"{key}: {base!r} != {cur!r}" for key, (base, cur) in pairs.items()
            if base is not None and cur is not None and base != cur]


def _whole_run_moved(shift: dict[str, Any] | None, threshold: float) -> bool:
    return shift is not None and abs(shift["ratio"] - 1) > threshold and shift["same_direction"] >= 0.75


def _shift_note(shift: dict[str, Any]) -> str:
    return (f"The whole run moved: the median case changed by {relative(shift['ratio'] - 1)} and "
            f"{percent(shift['same_direction'], 0)} of the {shift['cases']} cases moved the same way. "
            "A shift of every case is often the machine (another process, CPU clocks, a slow process), "
            "and sometimes the change; the gate cannot tell which. Rerun base and head interleaved on one "
            "machine, several runs per side (README).")


def _moved_beyond(timed: pd.DataFrame, shift: float, threshold: float) -> int:
    """How many cases moved beyond the threshold in the direction of the run-wide shift."""
    ratios = np.array([np.median(c) / np.median(b) for b, c in zip(timed["times_s_base"], timed["times_s_cur"])])
    return int((ratios - 1 > threshold).sum() if shift >= 1 else (1 - ratios > threshold).sum())


def normalization(timed: pd.DataFrame, shift: dict[str, Any] | None, config: GateConfig) -> tuple[bool, list[str]]:
    """Whether ``--normalize`` divides the run-wide shift out of this pair, and the notes saying so.

    Only a shift within the threshold is divided out. The shift is the median case's change, so
    one beyond the threshold means at least half the cases moved beyond it the same way: the
    shift is then set by the cases that changed (the machine's doing or the change's: the gate
    cannot tell), and dividing it out would call unchanged cases improvements, or a case whose
    own time rose faster, and pass a change that slows every case alike."""
    notes = [_shift_note(shift)] if _whole_run_moved(shift, config.threshold) else []
    if not config.normalize:
        return False, notes
    if shift is None:
        return False, notes + [f"Not normalized (--normalize): {len(timed)} timed cases are too few to tell a "
                               f"run-wide shift (at least {MIN_CASES_FOR_SHIFT}); verdicts are on the measured times."]
    change = relative(shift["ratio"] - 1)
    if abs(shift["ratio"] - 1) > config.threshold:
        moved = _moved_beyond(timed, shift["ratio"], config.threshold)
        return False, notes + [
            f"Not normalized: normalizing is unsafe for this pair. The run-wide shift ({change}) is beyond the "
            f"{short_percent(config.threshold)} threshold: {moved} of the {shift['cases']} cases moved more than "
            "that the same way, so the shift is set by the cases that changed, and dividing it out would judge "
            "every case against them. Verdicts below are on the measured times."]
    return True, notes + [f"Normalized (--normalize): each change and verdict is relative to the run-wide shift of "
                          f"{change} (within the {short_percent(config.threshold)} threshold); the raw change, "
                          "as measured, is shown beside it."]


def _unmatched_patterns(patterns: Mapping[str, float], case_ids: Sequence[str], option: str) -> list[str]:
    return [f"{option} pattern {pattern!r} matches no compared case (patterns match literally except * and ?)"
            for pattern in patterns if not any(match_case(pattern, case_id) for case_id in case_ids)]


def _nothing_compared(baseline: pd.DataFrame, current: pd.DataFrame) -> str:
    def statuses(df: pd.DataFrame) -> str:
        counts = df.drop_duplicates("case_id", keep="last")["status"].value_counts()
        return ", ".join(f"{n} {status}" for status, n in counts.items()) or "no cases"

    return (f"no case measured in both result sets (baseline: {statuses(baseline)}; "
            f"current: {statuses(current)}); check that both sides ran the same selection")


def gate(baseline: pd.DataFrame, current: pd.DataFrame, config: GateConfig | None = None) -> dict[str, Any]:
    """The verdict: cases not compared (failed, lost, new...), timing table, deterministic
    changes, instruction counts, counts of each, and whether the gate passes."""
    config = config or GateConfig()
    cases = classify_cases(baseline, current)
    kinds = cases["kind"].value_counts()
    failed, lost = int(kinds.get("failed", 0)), int(kinds.get("lost", 0))
    combined_b, combined_c = combine_runs(baseline, config.aggregate), combine_runs(current, config.aggregate)
    try:
        merged = common_cases(combined_b, combined_c, timed=False)
    except GateInputError:
        if not failed:
            raise GateInputError(_nothing_compared(baseline, current)) from None
        merged = pd.DataFrame(columns=["case_id"])
    timed = merged[merged["times_s_base"].map(_has_rounds) & merged["times_s_cur"].map(_has_rounds)] \
        if "times_s_base" in merged else merged
    counted = compare_counts(merged, config)
    if not merged.empty and timed.empty and counted.empty:
        raise GateInputError(
            f"nothing to compare: the {len(merged)} cases measured on both sides have neither timing rounds "
            f"nor instruction counts on both (a count run against a timing run?)")
    shift = run_shift(timed["times_s_base"].tolist(), timed["times_s_cur"].tolist()) if not timed.empty else None
    normalized, notes = normalization(timed, shift, config)
    timing = compare_timing(divide_out(timed, shift["ratio"]) if normalized else timed, config)
    if normalized:  # verdicts and ratios relative to the shift; medians and raw_ratio as measured
        timing["current_s"] *= shift["ratio"]
        timing["raw_ratio"] = timing["current_s"] / timing["baseline_s"]
    if not timing.empty and ((timing["runs_base"] == 1).all() or (timing["runs_cur"] == 1).all()):
        notes.append("One run on a side: on a shared machine a single run can be 20-70% off for a "
                     "stretch of cases, which its own rounds cannot show; compare folders of 5-10 interleaved "
                     "runs per side, or give calibrated noise floors (`nox -s calibrate`), under which such a "
                     "case reads \"cannot tell\" (README).")
    if timing.empty and not counted.empty:
        notes.append("Instruction counts only: no case has timing rounds on both sides (count runs), "
                     "so wall time was not compared.")
    elif 0 < len(timing) < len(merged):
        notes.append(f"{len(merged) - len(timing)} of the {len(merged)} cases measured on both sides have no "
                     "timing rounds on a side: their wall time was not compared.")
    deterministic = compare_deterministic(merged)
    warnings = [*_unmatched_patterns(config.case_thresholds, timing["case_id"].tolist(), "--case-threshold"),
                *_unmatched_patterns(config.case_count_thresholds, counted["case_id"].tolist(),
                                     "--case-count-threshold")]
    if lost and config.allow_missing:
        notes.append(f"{lost} cases the base measured were not measured on the head; allowed by --allow-missing.")
    verdicts = timing["verdict"].value_counts()
    regressions, cannot_tell = int(verdicts.get("regression", 0)), int(verdicts.get("cannot_tell", 0))
    count_verdicts = counted["verdict"].value_counts()
    count_regressions = int(count_verdicts.get("regression", 0))
    # A case the gate cannot tell at this run count was not checked: it fails, as a lost one does.
    passed = (regressions == 0 and cannot_tell == 0 and count_regressions == 0 and deterministic.empty
              and failed == 0 and (lost == 0 or config.allow_missing))
    return dict(
        passed=passed,
        cases=cases, timing=timing, deterministic=deterministic, instructions=counted,
        counts=dict(compared=len(merged), timed=len(timing), regressions=regressions,
                    improvements=int(verdicts.get("improvement", 0)), cannot_tell=cannot_tell,
                    unchanged=int(verdicts.get("unchanged", 0)),
                    deterministic_changes=len(deterministic),
                    counted=len(counted), count_regressions=count_regressions,
                    count_improvements=int(count_verdicts.get("improvement", 0)),
                    count_unchanged=int(count_verdicts.get("unchanged", 0)),
                    count_unstable=int(count_verdicts.get("unstable", 0)),
                    **{kind: int(kinds.get(kind, 0)) for kind in CASE_KINDS},
                    only_in_baseline=len(set(baseline["case_id"]) - set(current["case_id"])),
                    only_in_current=len(set(current["case_id"]) - set(baseline["case_id"]))),
        config=dict(threshold=config.threshold, case_thresholds=config.case_thresholds,
                    alpha=config.alpha, noise_floor_cases=len(config.noise_floor),
                    normalize=config.normalize, normalized=normalized, aggregate=config.aggregate, allow_missing=config.allow_missing,
                    count_threshold=config.default_count_threshold(),
                    case_count_thresholds=config.case_count_thresholds, count_stability=config.count_stability,
                    test="one-sided Mann-Whitney U on raw rounds, Holm-corrected"),
        run_shift=shift, notes=[*warnings, *notes], warnings=warnings,
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
