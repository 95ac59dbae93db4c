"""Timing figures: pytest-benchmark's statistics of the raw rounds, and the run context
recorded beside them (the ``context`` pass). Statistics derived from the raw rounds (the
median's CI, noise) are computed by the reports when results are read, not stored here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from bench.schema.figures import Figure, Kind, View

if TYPE_CHECKING:
    from bench.passes.base import Timing
    from bench.workloads.step import Step

_H, _T = frozenset({View.HISTORY}), frozenset({View.TABLE, View.HISTORY})

# pytest-benchmark's own statistics, keyed by its name -> our column (seconds per call).
STAT_COLUMNS = {
    "median": "median_s", "mean": "mean_s", "min": "min_s", "max": "max_s",
    "stddev": "stddev_s", "iqr": "iqr_s", "q1": "q1_s", "q3": "q3_s", "total": "total_s",
    "rounds": "rounds", "iterations": "iterations", "ops": "ops",
}
REQUIRED_STATS = ("median", "min", "max", "rounds")  # what every report reads

FIGURES = (
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
    Figure("samples_per_s", Kind.RATE, "samples/s", "timing", "samples per call (a batch, or an epoch's images) / median", views=_T),
    Figure("tokens_per_s", Kind.RATE, "tokens/s", "timing",
           "token workloads: tokens per call (batch × sequence length × micro-batches, or an epoch's) / median",
           views=_T),
    Figure("first_call_s", Kind.SECONDS, "first call", "timing", "the first (for compile: compiling) call",
           views=_H),
    Figure("time_to_first_step_s", Kind.SECONDS, "to first step", "timing",
           "building the model, batch and optimizer, then the first call (compile included)", views=_T),
    Figure("param_count", Kind.COUNT, "parameters", "timing", deterministic=True, views=_H),
    Figure("torch_version", Kind.TEXT, "torch", "timing", views=_H),
    Figure("num_threads", Kind.COUNT, "threads", "timing", views=_H),
    Figure("load_avg_1m", Kind.NUMBER, "load avg", "timing", "1-minute load average when the case ran",
           views=_H),
    Figure("pid", Kind.COUNT, "pid", "timing", views=frozenset()),
)


def context_figures(step: Step, timing: Timing) -> dict[str, Any]:
    """Throughput, size and the context the case ran in (threads, load, process)."""
    import torch

    case = step.case
    return dict(
        param_count=step.param_count, first_call_s=timing.first_call_s,
        # optimizer_step touches parameters, not samples: no throughput for it.
        samples_per_s=None if case.phase == "optimizer_step" else step.items_per_call / timing.median_s,
        tokens_per_s=(step.tokens_per_call / timing.median_s
                      if step.tokens_per_call and case.phase != "optimizer_step" else None),
        time_to_first_step_s=step.build_s + timing.first_call_s,
        torch_version=torch.__version__, num_threads=torch.get_num_threads(), pid=os.getpid(),
        # Other busy processes make OpenMP threads wait on each other: keep the load beside the time.
        load_avg_1m=os.getloadavg()[0],
    )
