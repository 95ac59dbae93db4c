"""Statistics on raw round times (seconds): median, its confidence interval, spread, noise."""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.figures import Figure, Kind, View, declare

NOISY_IQR_REL = 0.10  # interquartile range above 10% of the median
NOISY_CI_REL = 0.05  # 95% CI of the median wider than 5% of it

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})
# Derived from the raw rounds when results are read (older runs also stored them).
FIGURES = declare(
    Figure("median_ci_low_s", Kind.SECONDS, "CI low", "stats", "95% CI of the median, low end", views=_T),
    Figure("median_ci_high_s", Kind.SECONDS, "CI high", "stats", "95% CI of the median, high end", views=_T),
    Figure("iqr_rel", Kind.RATIO, "IQR", "stats", "interquartile range / median", views=_T),
    Figure("ci_rel_width", Kind.RATIO, "CI width", "stats", "CI width / median", views=_H),
    Figure("noisy", Kind.FLAG, "noisy", "stats", "IQR above 10% or CI above 5% of the median", views=_T),
)


@functools.lru_cache(maxsize=4096)
def _median_ranks(n: int, confidence: float) -> tuple[int, int]:
    """0-based ranks (j, k) with P(x_(j) <= median <= x_(k)) >= confidence, from Binomial(n, 1/2)."""
    alpha = 1 - confidence
    j = int(sps.binom.ppf(alpha / 2, n, 0.5))  # smallest j with P(B <= j) >= alpha/2
    if sps.binom.cdf(j, n, 0.5) > alpha / 2:
        j -= 1  # keep the tail below the median at most alpha/2
    j = max(j, 0)
    return j, n - 1 - j


def median_ci(times: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (binomial ranks, via scipy)."""
    x = np.sort(np.asarray(times, dtype=float))
    if len(x) == 0:
        return math.nan, math.nan
    j, k = _median_ranks(len(x), confidence)
    return float(x[j]), float(x[k])


def summarize(times: Sequence[float], iqr: float | None = None, iqr_threshold: float = NOISY_IQR_REL,
              ci_threshold: float = NOISY_CI_REL) -> dict[str, float | bool]:
    """Per-case figures kept beside pytest-benchmark's own statistics.

    ``iqr``: pass pytest-benchmark's own interquartile range so both agree; without it the
    quartiles are numpy's.
    """
    x = np.asarray(times, dtype=float)
    median = float(np.median(x))
    if iqr is None:
        q1, q3 = np.percentile(x, [25, 75])
        iqr = float(q3 - q1)
    low, high = median_ci(x)
    iqr_rel = float(iqr / median) if median else math.nan
    ci_rel = float((high - low) / median) if median else math.nan
    return dict(median_ci_low_s=low, median_ci_high_s=high, iqr_rel=iqr_rel, ci_rel_width=ci_rel,
                noisy=bool(iqr_rel > iqr_threshold or ci_rel > ci_threshold))


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
