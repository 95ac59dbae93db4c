"""The phases, and the one table that lists them: phase name -> builder.

A builder takes the case's ``Workload`` and returns ``(fn, setup)`` or a ``Built`` (the
timed function, its untimed per-round setup, and for a loop its items and rounds). A new
phase is one module here with its builder, plus one line in ``PHASE_BUILDERS`` (and its
one-line test function in ``bench/bench_steps.py``, which pytest collects by name).
"""

from __future__ import annotations

from bench.workloads.phases import loops, steps
from bench.workloads.step import PhaseBuilder

PHASE_BUILDERS: dict[str, PhaseBuilder] = {
    "forward": steps.forward,
    "backward": steps.backward,
    "optimizer_step": steps.optimizer_step,
    "train_step": steps.train_step,
    "data": loops.data,
    "epoch": loops.epoch,
}
