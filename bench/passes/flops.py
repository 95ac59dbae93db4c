"""FLOPs per step (torch.utils.flop_counter) and the device's peak FLOP/s."""

from __future__ import annotations

import functools
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bench.schema.figures import Figure, Kind, View

if TYPE_CHECKING:
    from bench.passes.base import Timing
    from bench.workloads.step import Step

# Dense peak FLOP/s from the vendors' data sheets: (name fragment, {precision: FLOP/s}).
# More specific names first; "tf32" applies to float32 when TF32 matmuls are allowed.
GPU_PEAKS: list[tuple[str, dict[str, float]]] = [
    ("H100 PCIe", dict(float32=51.2e12, tf32=378e12, bfloat16=756e12)),
    ("H100", dict(float32=66.9e12, tf32=494.7e12, bfloat16=989.4e12)),
    ("H200", dict(float32=66.9e12, tf32=494.7e12, bfloat16=989.4e12)),
    ("A100", dict(float32=19.5e12, tf32=156e12, bfloat16=312e12)),
    ("L40S", dict(float32=91.6e12, tf32=183e12, bfloat16=362e12)),
    ("L4", dict(float32=30.3e12, tf32=60e12, bfloat16=121e12)),
    ("A10", dict(float32=31.2e12, tf32=62.5e12, bfloat16=125e12)),
    ("V100", dict(float32=15.7e12, tf32=15.7e12, bfloat16=0.0)),
    ("T4", dict(float32=8.1e12, tf32=8.1e12, bfloat16=0.0)),
]
CPU_PEAK_MATMUL_SIZE = 1024

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})
FIGURES = (
    Figure("flops", Kind.FLOPS, "FLOPs", "flops", "matmul and convolution FLOPs of one call (eager twin)",
           deterministic=True, views=_H),
    Figure("flops_per_s", Kind.FLOP_RATE, "FLOP/s", "flops", "FLOPs / median", views=_T),
    Figure("peak_flops_per_s", Kind.FLOP_RATE, "peak FLOP/s", "flops", "data sheet (GPU) or measured matmul (CPU)",
           views=_H),
    Figure("peak_share", Kind.RATIO, "of peak", "flops", "FLOP/s as a share of the peak", views=_T),
    Figure("peak_source", Kind.TEXT, "peak source", "flops", views=_H),
)


def count_flops(step: Step) -> int:
    """FLOPs of one timed call of an *eager* step (compiled code bypasses the counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)

    def counted(fn, *args, **kwargs) -> None:
        with counter:
            fn(*args, **kwargs)

    step.run(counted)
    return int(counter.get_total_flops())


def gpu_peak(name: str, dtype: str, tf32: bool) -> float | None:
    precision = "tf32" if dtype == "float32" and tf32 else dtype
    for fragment, peaks in GPU_PEAKS:
        if fragment in name:
            return peaks.get(precision) or None
    return None


@functools.lru_cache(maxsize=None)
def cpu_peak(dtype: str = "float32", size: int = CPU_PEAK_MATMUL_SIZE, repeats: int = 10) -> float:
    """FLOP/s of the best of a few large matmuls at the current thread count (measured once)."""
    import torch

    torch_dtype = getattr(torch, dtype)
    a = torch.randn(size, size, dtype=torch_dtype)
    b = torch.randn(size, size, dtype=torch_dtype)
    torch.mm(a, b)  # warm-up: thread pool and code paths
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def device_peak(device: str, dtype: str) -> tuple[float | None, str]:
    """(peak FLOP/s, where it comes from) for the case's device and dtype."""
    import torch

    if device == "cuda":
        name = torch.cuda.get_device_name()
        tf32 = torch.backends.cuda.matmul.allow_tf32
        peak = gpu_peak(name, dtype, tf32)
        return peak, (f"data sheet: {name}" if peak else f"unknown GPU: {name}")
    return cpu_peak(dtype), f"measured: {CPU_PEAK_MATMUL_SIZE}² matmul, {torch.get_num_threads()} threads"


def flop_figures(step: Step, timing: Timing) -> dict[str, Any]:
    """FLOPs of one call (counted on an eager twin: compiled kernels bypass the counter)."""
    from bench.workloads.build import build_step

    case = step.case
    if step.is_loop:
        return {}  # an epoch's FLOPs are its train_step's times the batches: not counted again
    eager = step if case.mode == "eager" else build_step(replace(case, mode="eager"),
                                                         compile_backend=timing.compile_backend)
    flops = count_flops(eager)
    peak, source = device_peak(case.device, case.dtype)
    achieved = flops / timing.median_s if flops else None
    return dict(flops=flops, flops_per_s=achieved, peak_flops_per_s=peak, peak_source=source,
                peak_share=achieved / peak if achieved and peak else None)
