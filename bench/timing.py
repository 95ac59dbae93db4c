"""Timing figures: pytest-benchmark's statistics of the raw rounds, and the run context
recorded beside them. (The step layer's timing code builds on these declarations.)"""

from __future__ import annotations

from .figures import Figure, Kind, View, declare

_H, _T = frozenset({View.HISTORY}), frozenset({View.TABLE, View.HISTORY})

# pytest-benchmark's own statistics, keyed by its name -> our column (seconds per call).
STAT_COLUMNS = {
    "median": "median_s", "mean": "mean_s", "min": "min_s", "max": "max_s",
    "stddev": "stddev_s", "iqr": "iqr_s", "q1": "q1_s", "q3": "q3_s", "total": "total_s",
    "rounds": "rounds", "iterations": "iterations", "ops": "ops",
}
REQUIRED_STATS = ("median", "min", "max", "rounds")  # what every report reads

TIMING = declare(
    Figure("median_s", Kind.SECONDS, "median", "timing", "median time of one call over the rounds", views=_T),
    Figure("mean_s", Kind.SECONDS, "mean", "timing", views=_H),
    Figure("min_s", Kind.SECONDS, "min", "timing", views=_H),
    Figure("max_s", Kind.SECONDS, "max", "timing", views=_H),
    Figure("stddev_s", Kind.SECONDS, "stddev", "timing", views=_H),
    Figure("iqr_s", Kind.SECONDS, "IQR", "timing", views=_H),
    Figure("q1_s", Kind.SECONDS, "Q1", "timing", views=_H),
    Figure("q3_s", Kind.SECONDS, "Q3", "timing", views=_H),
    Figure("total_s", Kind.SECONDS, "total", "timing", views=_H),
    Figure("rounds", Kind.COUNT, "rounds", "timing", views=_T),
    Figure("iterations", Kind.COUNT, "iterations", "timing", views=_H),
    Figure("ops", Kind.RATE, "calls/s", "timing", views=frozenset()),
    Figure("samples_per_s", Kind.RATE, "samples/s", "timing", "batch size / median", views=_T),
    Figure("first_call_s", Kind.SECONDS, "first call", "timing", "the first (for compile: compiling) call",
           views=_H),
    Figure("param_count", Kind.COUNT, "parameters", "timing", deterministic=True, views=_H),
    Figure("torch_version", Kind.TEXT, "torch", "timing", views=_H),
    Figure("num_threads", Kind.COUNT, "threads", "timing", views=_H),
    Figure("load_avg_1m", Kind.NUMBER, "load avg", "timing", "1-minute load average when the case ran",
           views=_H),
    Figure("pid", Kind.COUNT, "pid", "timing", views=frozenset()),
)
