"""Statistics on raw round times (seconds): median, its confidence interval, spread, noise."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats as sps

NOISY_IQR_REL = 0.10  # interquartile range above 10% of the median
NOISY_CI_REL = 0.05  # 95% CI of the median wider than 5% of it


def median_ci(times: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median from order statistics (binomial, via scipy)."""
    x = np.sort(np.asarray(times, dtype=float))
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) < 6:  # too few rounds for a 95% order-statistic interval: the full range
        return float(x[0]), float(x[-1])
    ci = sps.quantile_test(x, q=float(np.median(x)), p=0.5).confidence_interval(confidence)
    low = float(ci.low) if np.isfinite(ci.low) else float(x[0])
    high = float(ci.high) if np.isfinite(ci.high) else float(x[-1])
    return low, high


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
