"""Small statistics on raw round times: the confidence interval of a median.

Distribution-free: round times are skewed (a few slow rounds), so no normal model.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

LEVEL = 0.95
# Up to this many rounds the binomial tail is summed exactly; beyond, its normal
# approximation is accurate to well under one rank.
_EXACT_MAX_N = 1000


def _rank_below_median(n: int, level: float) -> int:
    """The largest j with P(Binomial(n, 1/2) < j) <= (1 - level) / 2; 0 when no such j."""
    alpha = (1 - level) / 2
    if n > _EXACT_MAX_N:
        z = _normal_quantile(1 - alpha)
        return max(0, math.floor(n / 2 - z * math.sqrt(n) / 2))
    total, cumulative, j = 2**n, 0, 0
    while j < n:
        cumulative += math.comb(n, j)
        if cumulative / total > alpha:
            break
        j += 1
    return j


def _normal_quantile(p: float) -> float:
    # Bisection on erf: precise enough to pick a rank, and no scipy dependency.
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def median_ci(times: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """Confidence interval of the median from order statistics: ``(low, high)`` in seconds.

    With fewer than 6 rounds no pair of order statistics reaches 95%: the interval is
    then the whole range (min, max), the widest honest answer.
    """
    values = np.sort(np.asarray(times, dtype=float))
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    j = _rank_below_median(n, level)
    if j == 0:
        return float(values[0]), float(values[-1])
    return float(values[j - 1]), float(values[n - j])


def ci_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``ci_low_s`` / ``ci_high_s`` per row: the recorded CI of the median where a run
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


def significant_change(before: tuple[float, float, float], after: tuple[float, float, float],
                       min_change: float) -> bool:
    """True when two ``(median, ci_low, ci_high)`` differ beyond noise and beyond ``min_change``.

    Disjoint 95% intervals of the medians is a conservative test; the relative threshold
    keeps a real but negligible shift (thousands of rounds make any shift "significant")
    from being flagged.
    """
    (m0, lo0, hi0), (m1, lo1, hi1) = before, after
    if any(math.isnan(v) for v in (m0, lo0, hi0, m1, lo1, hi1)) or m0 <= 0:
        return False
    disjoint = hi1 < lo0 or lo1 > hi0
    return disjoint and abs(m1 / m0 - 1) >= min_change
