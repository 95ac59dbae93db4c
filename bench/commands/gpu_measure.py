"""The GPU check's own measurements, made in its own process without the suite's harness: CUDA-event
timing of a case's step, the caching allocator's peak over two steps, and the FLOP/s of a large
matmul. ``bench.commands.gpu_check`` compares them with what ``pytest bench`` recorded for the same
case in another process, so a figure the harness gets wrong (a missing synchronization, a peak that
holds an earlier case's tensors) shows as a disagreement.
"""

from __future__ import annotations

import functools
import gc
import math
import statistics
from dataclasses import dataclass
from typing import Callable

import torch

from bench.schema.case import Case
from bench.workloads.backend import backend_settings
from bench.workloads.build import build_step

# Seconds one execution of the body took, the device idle when it started.
Clock = Callable[[Callable[[], None]], float]

WARMUP_CALLS = 4  # as the harness before its rounds: the first call, then three warm-up calls
MEMORY_STEPS = 2  # as the suite's memory pass: the second step frees what the first left behind
EVENT_SECONDS = 1.0  # timed seconds per case for the per-round events
MIN_ROUNDS, MAX_ROUNDS = 20, 1000
# A second figure without a synchronization per round: many calls between two events (at most
# BLOCK_CALLS, fewer for a long step: GPT-2's 50 calls would take seconds a round).
BLOCK_CALLS, BLOCK_ROUNDS, BLOCK_SECONDS = 50, 5, 0.25
MATMUL_SIZE = 8192  # data-sheet peaks are approached by large square products only
MATMUL_ROUNDS, MATMUL_WARMUP = 10, 3


def event_clock(body: Callable[[], None]) -> float:
    """CUDA events around ``body``, recorded on an idle device: seconds on the device's own clock."""
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    body()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def round_times(call: Callable[[], object], rounds: int, iterations: int, clock: Clock) -> list[float]:
    """Seconds per call in each of ``rounds`` rounds of ``iterations`` calls, as pytest-benchmark's
    rounds are: each round timed whole by ``clock``, divided by its calls."""
    def body() -> None:
        for _ in range(iterations):
            call()

    return [clock(body) / iterations for _ in range(rounds)]


def rounds_for(median_s: float, iterations: int, seconds: float = EVENT_SECONDS) -> int:
    """Rounds that fill about ``seconds`` at the suite's median, at least MIN_ROUNDS (a stable
    median) and at most MAX_ROUNDS (a step of microseconds would ask for a million)."""
    wanted = math.ceil(seconds / max(median_s * iterations, 1e-9))
    return max(MIN_ROUNDS, min(MAX_ROUNDS, wanted))


def block_calls(median_s: float) -> int:
    """Calls between two events for about BLOCK_SECONDS, between 1 and BLOCK_CALLS."""
    return max(1, min(BLOCK_CALLS, math.ceil(BLOCK_SECONDS / max(median_s, 1e-9))))


@dataclass(frozen=True)
class StepProbe:
    """One case's step measured here: CUDA-event medians and the allocator's figures."""

    case_id: str
    event_median_s: float  # per call, rounds of the suite's iterations, synchronized at their edges
    event_rounds: int
    iterations: int
    blocked_median_s: float  # per call, block_calls calls between two events
    block_calls: int
    held_bytes: int  # allocated at the start of the measured steps
    peak_bytes: int  # torch.cuda.max_memory_allocated over MEMORY_STEPS steps


def release() -> None:
    """Free what earlier measurements left, so the next case's peak holds only its own tensors."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def allocator_peak(step_fn: Callable[[], object]) -> tuple[int, int]:
    """(allocated now, the allocator's peak over MEMORY_STEPS more steps)."""
    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(MEMORY_STEPS):
        step_fn()
    torch.cuda.synchronize()
    return held, torch.cuda.max_memory_allocated()


def probe_step(case: Case, iterations: int, suite_median_s: float) -> StepProbe:
    """Build the case's step anew (the suite's builder, not its harness), warm it up as the harness
    does, then read the allocator's peak and time it with CUDA events."""
    release()
    step = build_step(case)
    try:
        if step.setup is not None:
            raise ValueError(f"{case.id}: its phase has a per-round setup; the check times train_step")
        for _ in range(WARMUP_CALLS):
            step.fn()
        held, peak = allocator_peak(step.fn)
        rounds = rounds_for(suite_median_s, iterations)
        per_round = round_times(step.fn, rounds, iterations, event_clock)
        calls = block_calls(suite_median_s)
        blocked = round_times(step.fn, BLOCK_ROUNDS, calls, event_clock)
    finally:
        del step
        release()
    return StepProbe(case_id=case.id, event_median_s=statistics.median(per_round), event_rounds=rounds,
                     iterations=iterations, blocked_median_s=statistics.median(blocked), block_calls=calls,
                     held_bytes=held, peak_bytes=peak)


def settings_case(tf32: bool = False, cudnn_benchmark: bool = False) -> Case:
    """A CUDA case that only carries backend settings, for ``backend_settings``: the switch every
    suite case goes through, so a product timed under it runs as the suite's tf32 cases do."""
    return Case(phase="train_step", model="-", optimizer=None, device="cuda", mode="eager", tf32=tf32,
                cudnn_benchmark=cudnn_benchmark)


def matmul_times(dtype: str, tf32: bool, size: int) -> list[float]:
    """Seconds of each of MATMUL_ROUNDS ``size``² × ``size``² products on random data."""
    generator = torch.Generator(device="cuda").manual_seed(0)
    a, b = (torch.randn(size, size, device="cuda", dtype=getattr(torch, dtype), generator=generator)
            for _ in range(2))
    with backend_settings(settings_case(tf32=tf32)):
        for _ in range(MATMUL_WARMUP):
            torch.mm(a, b)
        return round_times(functools.partial(torch.mm, a, b), MATMUL_ROUNDS, 1, event_clock)


def matmul_flops(dtype: str, tf32: bool = False, size: int = MATMUL_SIZE) -> float:
    """FLOP/s of a large square product: the median of MATMUL_ROUNDS."""
    try:
        times = matmul_times(dtype, tf32, size)
    finally:
        release()  # the operands went with matmul_times's frame
    return 2 * size**3 / statistics.median(times)


def cudnn_benchmark_in_effect() -> tuple[bool, bool]:
    """(cuDNN's autotuner on inside a cudnn_benchmark case's settings, back as it was after them)."""
    before = torch.backends.cudnn.benchmark
    with backend_settings(settings_case(cudnn_benchmark=True)):
        inside = torch.backends.cudnn.benchmark
    return bool(inside), torch.backends.cudnn.benchmark == before


def nccl_version() -> str | None:
    """NCCL's version as torch was built with it, or None where torch has no NCCL."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_nccl_available()):
        return None
    version = torch.cuda.nccl.version()
    return ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
