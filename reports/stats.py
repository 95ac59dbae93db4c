"""Every statistic of the reports, on raw round times (seconds): the median's confidence
interval, spread and noise (derived for each row when results are read), the history's
shift test, and the gate's Holm correction, ratio interval, whole-run shift, per-case noise and
noise floors.
No formatting here: numbers in, numbers out."""

from __future__ import annotations

import functools
import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.schema.figures import Figure, Kind, View

# A case is *noisy* when a conclusion drawn from its median is unsafe: the 95% CI of the median
# is wider than ±2% of it (a 2% difference cannot be told apart), or the rounds drifted (the
# medians of the first and the second half of the rounds differ by more than 1% and by more
# than their intervals allow: the CI then understates the uncertainty). The interquartile range
# is not a criterion: a wide but stable spread still gives a precise median (the old rule,
# IQR above 10%, flagged 77 of 94 cases of the default preset and so told nothing).
NOISY_CI_HALF = 0.02  # 95% CI of the median wider than ±2% of it
NOISY_DRIFT = 0.01  # the halves' medians differ significantly, and by more than 1%
MIN_DRIFT_ROUNDS = 10  # a drift needs 5 rounds a side (fewer: each half's interval is its whole range)
NOISY_RULE = ("noisy: the 95% CI of the median is wider than ±{ci} of it, or the rounds drifted "
              "(the medians of their first and second half differ by more than {drift}, beyond "
              "their 95% intervals); a noisy case's comparisons are not safe.")

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})
# Derived from the raw rounds when results are read (older runs also stored them; ``derive``
# recomputes them for every row, so old and new runs read the same).
FIGURES = (
    Figure("median_ci_low_s", Kind.SECONDS, "CI low", "stats", "95% CI of the median, low end", views=_T),
    Figure("median_ci_high_s", Kind.SECONDS, "CI high", "stats", "95% CI of the median, high end", views=_T),
    Figure("iqr_rel", Kind.RATIO, "IQR", "stats", "interquartile range / median", views=_T),
    Figure("ci_rel_width", Kind.RATIO, "CI width", "stats", "CI width / median", views=_H),
    Figure("drift_rel", Kind.RATIO, "drift", "stats",
           "median of the second half of the rounds / median of the first half - 1", views=_H),
    Figure("noisy", Kind.FLAG, "noisy", "stats", "CI wider than ±2% of the median, or the rounds drifted",
           views=_T),
)
DERIVED = tuple(f.name for f in FIGURES)


# scipy.stats.quantile_test(x, p=0.5).confidence_interval(0.95) gives the same interval as
# these ranks from 6 rounds on (checked for n = 6..119, 200, 500, 1000, 3001 in
# tests/test_reports.py), but NaN for 5 rounds or fewer, where this interval is the whole range
# (which the history's shift test relies on: a run of 3 rounds never shows a shift). It also
# searches the binomial on every call; the gate calls this per case and side. So: cached ranks.
@functools.lru_cache(maxsize=4096)
def median_ranks(n: int, confidence: float) -> tuple[int, int]:
    """0-based ranks (j, k) with P(x_(j) <= median <= x_(k)) >= confidence, from Binomial(n, 1/2)."""
    alpha = 1 - confidence
    j = int(sps.binom.ppf(alpha / 2, n, 0.5))  # smallest j with P(B <= j) >= alpha/2
    if sps.binom.cdf(j, n, 0.5) > alpha / 2:
        j -= 1  # keep the tail below the median at most alpha/2
    j = max(j, 0)
    return j, n - 1 - j


def median_ci(times: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (binomial ranks)."""
    x = np.sort(np.asarray(times, dtype=float))
    if len(x) == 0:
        return math.nan, math.nan
    j, k = median_ranks(len(x), confidence)
    return float(x[j]), float(x[k])


def drift(times: Sequence[float]) -> tuple[float, bool]:
    """How far the rounds' second half moved from the first (median ratio - 1), and whether
    significantly (the 95% interval of that ratio excludes 1). Too few rounds: (nan, False)."""
    x = np.asarray(times, dtype=float)
    if len(x) < MIN_DRIFT_ROUNDS:
        return math.nan, False
    first, second = x[: len(x) // 2], x[len(x) // 2:]
    if not np.median(first) > 0:
        return math.nan, False
    low, high = ratio_interval(first, second)
    return float(np.median(second) / np.median(first) - 1), bool(low > 1 or high < 1)


def summarize(times: Sequence[float], iqr: float | None = None, ci_threshold: float = NOISY_CI_HALF,
              drift_threshold: float = NOISY_DRIFT) -> dict[str, float | bool]:
    """The derived figures (``DERIVED``) of one case's rounds (``noisy``: see ``NOISY_RULE``).

    ``iqr``: pass pytest-benchmark's own interquartile range so both agree; without it the
    quartiles are numpy's.
    """
    x = np.asarray(times, dtype=float)
    median = float(np.median(x))
    if iqr is None or (isinstance(iqr, float) and math.isnan(iqr)):
        q1, q3 = np.percentile(x, [25, 75])
        iqr = float(q3 - q1)
    low, high = median_ci(x)
    iqr_rel = float(iqr / median) if median else math.nan
    ci_rel = float((high - low) / median) if median else math.nan
    moved, significant = drift(x)
    drifted = significant and abs(moved) > drift_threshold
    return dict(median_ci_low_s=low, median_ci_high_s=high, iqr_rel=iqr_rel, ci_rel_width=ci_rel,
                drift_rel=moved, noisy=bool(not ci_rel <= 2 * ci_threshold or drifted))


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the derived figures computed from ``times_s`` for every row that has rounds
    (whatever the file stored); rows without rounds keep what was stored, or nothing."""
    out = df.copy()
    for name in DERIVED:
        if name not in out:
            out[name] = None
        out[name] = out[name].astype(object)
    iqr = out["iqr_s"] if "iqr_s" in out else pd.Series(math.nan, index=out.index)
    for index, times, row_iqr in zip(out.index, out["times_s"], iqr):
        if isinstance(times, (list, tuple)) and len(times):
            for name, value in summarize(times, iqr=row_iqr).items():
                out.at[index, name] = value
    for name in DERIVED:
        if name != "noisy":
            out[name] = pd.to_numeric(out[name], errors="coerce")
    return out


def ci_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``ci_low_s`` / ``ci_high_s`` per row: the recorded CI of the median where a row
    has one (``median_ci_low_s``/``median_ci_high_s``), else computed from ``times_s``."""
    low, high = [], []
    for _, row in df.iterrows():
        recorded = (row.get("median_ci_low_s"), row.get("median_ci_high_s"))
        if all(v is not None and not pd.isna(v) for v in recorded):
            lo, hi = recorded
        else:
            lo, hi = median_ci(row.get("times_s") or [])
        low.append(float(lo))
        high.append(float(hi))
    return pd.DataFrame({"ci_low_s": low, "ci_high_s": high}, index=df.index)


# --- the history: did a case's median shift between consecutive runs? ---------------------


def shifted(before: tuple[float, float, float], after: tuple[float, float, float], min_shift: float) -> bool:
    """True when two ``(median, ci_low, ci_high)`` moved apart: disjoint 95% intervals AND a
    relative move of at least ``min_shift``.

    Disjoint intervals is a conservative test; the relative threshold keeps a real but
    negligible move (thousands of rounds make any move "significant") from being flagged.
    Not the gate's test (see ``holm`` and reports.gate), hence another name.
    """
    (m0, lo0, hi0), (m1, lo1, hi1) = before, after
    if any(math.isnan(v) for v in (m0, lo0, hi0, m1, lo1, hi1)) or m0 <= 0:
        return False
    disjoint = hi1 < lo0 or lo1 > hi0
    return disjoint and abs(m1 / m0 - 1) >= min_shift


# --- the gate: regressions and improvements between two result sets ----------------------


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control across cases)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def ratio_interval(base: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """95% interval of median(cur) / median(base) from the two medians' order-statistic CIs."""
    b_low, b_high = median_ci(base)
    c_low, c_high = median_ci(cur)
    return c_low / b_high, c_high / b_low


def mann_whitney(base: np.ndarray, cur: np.ndarray, ratio: float) -> tuple[float, float]:
    """One-sided Mann-Whitney p-values (current slower, current faster), tested only in the
    direction of the observed change: the other cannot pass the threshold, so its p is 1."""
    if len(base) < 2 or len(cur) < 2:
        return 1.0, 1.0
    direction = "greater" if ratio >= 1 else "less"
    p = float(sps.mannwhitneyu(cur, base, alternative=direction, method="asymptotic").pvalue)
    return (p, 1.0) if ratio >= 1 else (1.0, p)


# A whole-run shift needs enough cases to be told apart from a change in a few of them.
MIN_CASES_FOR_SHIFT = 5


def run_shift(base_times: Sequence[Sequence[float]], cur_times: Sequence[Sequence[float]]) -> dict | None:
    """How a whole current run moved against the baseline, from each case's rounds on both
    sides: the median of the cases' median ratios and the share of cases that moved the same
    way. None with too few cases."""
    if len(base_times) < MIN_CASES_FOR_SHIFT:
        return None
    ratios = np.array([np.median(c) / np.median(b) for b, c in zip(base_times, cur_times)])
    shift = float(np.median(ratios))
    same_way = float(np.mean(ratios > 1) if shift >= 1 else np.mean(ratios < 1))
    return dict(ratio=shift, same_direction=same_way, cases=len(ratios))


# Where a case's noise comes from (``case_noise``), as gate.md names it.
NOISE_FLOOR, NOISE_CI, NOISE_DRIFT = "calibrated floor", "CI of the medians", "drift within a run"


def case_noise(base: np.ndarray, cur: np.ndarray, floor: float = 0.0) -> tuple[float, str]:
    """How far one case's comparison can land from the truth, as a fraction, and what sets it:
    the calibrated A/A floor of the case (between runs, which its rounds cannot show), the
    half-width of the ratio's 95% interval (the rounds' spread), or a significant drift of the
    rounds on a side (the machine changed speed during the case, so the median depends on when
    the rounds stopped). A change smaller than this cannot be told from noise."""
    ratio = float(np.median(cur) / np.median(base))
    low, high = ratio_interval(base, cur)
    drifts = [abs(moved) for moved, significant in (drift(base), drift(cur)) if significant]
    candidates = {NOISE_FLOOR: floor, NOISE_CI: max(high / ratio - 1, 1 - low / ratio),
                  NOISE_DRIFT: max(drifts, default=0.0)}
    source = max(candidates, key=candidates.get)
    return float(candidates[source]), source


def runs_needed(noise: float, threshold: float, runs: int) -> int | None:
    """About how many runs per side bring ``noise`` at ``runs`` runs down to ``threshold``,
    if it shrinks as 1/sqrt(runs) (an estimate: the fastest of several runs, the gate's default,
    usually shrinks faster). None when no count of runs can reach a threshold of 0."""
    if threshold <= 0:
        return None
    return max(runs + 1, math.ceil(runs * (noise / threshold) ** 2))


def spread(a: Sequence[float], b: Sequence[float]) -> float:
    """How far apart two samples of the same code landed: the change of the median, or its
    95% interval's far end, whichever is larger."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    low, high = ratio_interval(a, b)
    return max(abs(float(np.median(b) / np.median(a)) - 1), high - 1, 1 - low)


def noise_floors(pairs: Iterable[tuple[str, Sequence[float], Sequence[float]]],
                 safety: float = 1.5) -> dict[str, float]:
    """Per case, over ``(case_id, rounds_a, rounds_b)`` pairs of the same code: the largest
    ``spread``, times a safety margin."""
    floors: dict[str, float] = {}
    for case_id, a, b in pairs:
        floors[case_id] = max(floors.get(case_id, 0.0), safety * spread(a, b))
    return floors
