"""The in-process runner: time a case's step with pytest-benchmark, then run the passes.

Layers, as in torch.utils.benchmark: ``bench.workloads.build.build_step`` makes the callable
(no timing), ``measure`` drives pytest-benchmark (the timing), and the passes
(``bench.passes``) add their figures to ``benchmark.extra_info`` as plain numbers in
seconds, bytes, counts; nothing here formats a number or derives statistics of the rounds
(the reports do, when they read the raw rounds).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from bench.passes import compile_counters, passes, run_passes
from bench.passes.base import Pass, Timing
from bench.schema.case import Case
from bench.schema.status import NonFiniteLoss, Status
from bench.workloads.backend import clear_compiler_memory, compile_cache_for
from bench.workloads.build import build_step, check_supported
from bench.workloads.step import Step, synchronize

WARMUP_CALLS = 3  # after the first (compiling) call, before calibration


def cuda_available() -> bool:
    return torch.cuda.is_available()


def synced_perf_counter() -> float:
    """pytest-benchmark timer for CUDA cases: waits for queued GPU work, then reads the clock.

    pytest-benchmark calls the timer only at the start and end of a round, so the
    synchronization happens at the edges of each round and never inside its loop.
    """
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def first_call(step: Step) -> float:
    """Run the step once, setup included, synchronized; for compiled cases this is the cold compile."""
    synchronize(step.case.device)
    start = time.perf_counter()
    step.run()
    synchronize(step.case.device)
    return time.perf_counter() - start


def warm_up(step: Step, calls: int = WARMUP_CALLS) -> float:
    """Warm-up calls; returns the mean duration of the timed part, to plan pedantic rounds."""
    device = step.case.device

    def stopwatch(fn, *args, **kwargs) -> float:
        synchronize(device)
        start = time.perf_counter()
        fn(*args, **kwargs)
        synchronize(device)
        return time.perf_counter() - start

    return sum(step.run(stopwatch) for _ in range(calls)) / calls


def pedantic_rounds(per_call_s: float, max_time: float, min_rounds: int) -> int:
    """Rounds for a setup-per-round benchmark, budgeted like pytest-benchmark's calibration."""
    return max(min_rounds, min(100_000, math.ceil(max_time / max(per_call_s, 1e-9))))


@dataclass(frozen=True)
class FirstCalls:
    """The first call of a case and, in compile mode, the same compile again."""

    first_s: float  # compile mode: the cold compile (the case's private, empty cache)
    compiled: compile_counters.CompileDelta  # what the first call compiled
    warm_s: float | None  # compile mode: the compile again, on the on-disk cache the first filled
    after: compile_counters.CompileSnapshot  # the counters once both are done


def first_calls(step: Step) -> FirstCalls:
    """The first (compiling) call; in compile mode then the same compile again as a second process
    on this machine would pay it: dynamo reset and inductor's in-memory caches emptied, its on-disk
    cache as the first call left it. Both run the step once, setup included."""
    before = compile_counters.snapshot()
    first_s = first_call(step)
    after_first = compile_counters.snapshot()
    if step.case.mode != "compile":
        return FirstCalls(first_s, after_first.since(before), None, after_first)
    torch.compiler.reset()
    clear_compiler_memory()
    warm_s = first_call(step)
    return FirstCalls(first_s, after_first.since(before), warm_s, compile_counters.snapshot())


def time_step(benchmark: Any, step: Step, *, max_time: float, min_rounds: int,
              compile_backend: str) -> tuple[Timing, compile_counters.CompileDelta]:
    """First (compiling) call(s) -> warm-up -> finiteness check -> pytest-benchmark's timed rounds.

    Returns the timing and what was compiled during the timed rounds (a recompile there
    invalidates the case).
    """
    first = first_calls(step)
    # A loop (an epoch per call) was warmed up by its first call; a step gets warm-up calls.
    per_call_s = first.first_s if step.is_loop else warm_up(step)
    if not step.is_finite():
        raise NonFiniteLoss(f"{'output' if step.case.phase == 'forward' else 'loss'} is not finite after warm-up")
    after_warm_up = compile_counters.snapshot()
    # The timed callable is step.fn itself, exactly as built: nothing wraps it.
    if step.is_loop:
        benchmark.pedantic(step.fn, rounds=step.rounds, iterations=1)
    elif step.setup is None:
        benchmark(step.fn)
    else:
        rounds = pedantic_rounds(per_call_s, max_time, min_rounds)
        benchmark.pedantic(step.fn, setup=step.setup, rounds=rounds, iterations=1)
    end = compile_counters.snapshot()
    timing = Timing(median_s=benchmark.stats.stats.median, first_call_s=first.first_s,
                    compile_first=first.compiled, compile_later=end.since(first.after),
                    compile_backend=compile_backend, compile_warm_s=first.warm_s)
    return timing, end.since(after_warm_up)


def verdict(step: Step, timed: compile_counters.CompileDelta) -> tuple[Status, str | None]:
    """OK, or INVALID with the reason: recompiled while timed, or non-finite after it."""
    if timed.frames:
        reasons = "; ".join(timed.guard_failures[:3]) or "no guard failure recorded"
        return Status.INVALID, f"recompiled {timed.frames} time(s) during the timed rounds ({reasons})"
    if not step.is_finite():
        return Status.INVALID, "the loss became non-finite during the timed rounds"
    return Status.OK, None


def dry_run(benchmark: Any, case: Case, compile_backend: str = "inductor") -> Step:
    """--benchmark-disable: build the step and run it once through the (disabled) fixture, untimed."""
    step = build_step(case, compile_backend=compile_backend)
    benchmark(step.run)
    if not step.is_finite():
        raise NonFiniteLoss(f"{'output' if case.phase == 'forward' else 'loss'} is not finite after one call")
    return step


def measure(benchmark: Any, case: Case, *, max_time: float, min_rounds: int,
            compile_backend: str = "inductor", extra_passes: Sequence[Pass] = ()) -> Step:
    """Build the step, time it, then run the passes; their figures go to ``benchmark.extra_info``.

    Failures raise (see ``bench.schema.status``) and become result rows.
    """
    check_supported(case)  # a case that cannot run here skips before any compiler starts
    with compile_cache_for(case, compile_backend):  # a compiled case compiles cold, on its own empty cache
        step = build_step(case, compile_backend=compile_backend)
        # The case fields before timing starts: an entry cut short (Ctrl-C) still names its case.
        benchmark.extra_info.update(case.as_dict(), case_id=case.id)
        timing, timed = time_step(benchmark, step, max_time=max_time, min_rounds=min_rounds,
                                  compile_backend=compile_backend)
        status, reason = verdict(step, timed)
        benchmark.extra_info.update(status=status.value, invalid_reason=reason)
        benchmark.extra_info.update(run_passes(step, timing, passes(extra_passes)))
    return step


@dataclass
class InProcessRunner:
    """Times the step in this process, then runs the passes."""

    max_time: float
    min_rounds: int
    compile_backend: str = "inductor"
    extra_passes: list[Pass] = field(default_factory=list)  # --profile's
    dry_run: bool = False  # --benchmark-disable: build and run each step once, time nothing
    last_step: Step | None = None

    def measure(self, benchmark: Any, case: Case) -> Step:
        if self.dry_run:
            self.last_step = dry_run(benchmark, case, compile_backend=self.compile_backend)
        else:
            self.last_step = measure(benchmark, case, max_time=self.max_time, min_rounds=self.min_rounds,
                                     compile_backend=self.compile_backend, extra_passes=self.extra_passes)
        return self.last_step
