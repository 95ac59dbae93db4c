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
CPU_PEAK_MIN_SIZE = 128
CPU_PEAK_BUDGET_S = 1.0  # the repeated matmuls of one dtype's peak, at most about this long

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})
FIGURES = (
    Figure("flops", Kind.FLOPS, "FLOPs", "flops", "matmul and convolution FLOPs of one call (eager twin)",
           deterministic=True, views=_H),
    Figure("flops_per_s", Kind.FLOP_RATE, "FLOP/s", "flops", "FLOPs / median", views=_T),
    Figure("peak_flops_per_s", Kind.FLOP_RATE, "peak FLOP/s", "flops", "data sheet (GPU) or measured matmul (CPU)",
           views=_H),
    Figure("peak_share", Kind.RATIO, "MFU", "flops",
           "model FLOPs utilization: FLOP/s (counted FLOPs per call / median) as a share of the device's "
           "peak for the case's precision (data sheet for GPUs; a matmul measured on this CPU)", views=_T),
    Figure("flops_estimate", Kind.FLOPS, "FLOPs (6NT)", "flops",
           "decoders: PaLM's / nanoGPT's estimate, (6·N + 12·L·H·Q·T) per token for a training step "
           "(a third for forward, two thirds for backward) × tokens per call; N: parameters less "
           "lookup-only embeddings", deterministic=True, views=_H),
    Figure("mfu_estimate", Kind.RATIO, "MFU (6NT)", "flops",
           "the 6·N·T estimate's FLOP/s as a share of the peak", views=_T),
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
def cpu_peak_size(dtype: str = "float32", size: int = CPU_PEAK_MATMUL_SIZE, repeats: int = 10,
                  budget_s: float = CPU_PEAK_BUDGET_S) -> int:
    """The matmul side ``cpu_peak`` measures at: ``size``, or smaller where this CPU would take
    longer than ``budget_s`` for ``repeats`` of them. A dtype the CPU emulates (bfloat16 and
    float16 without AMX or AVX512-FP16: ~1 GFLOP/s, 2.4 s a 1024² matmul on this project's VM)
    is measured small rather than for half a minute; float32 reaches ``size`` (1024²: ~15 ms)."""
    import torch

    torch_dtype, side = getattr(torch, dtype), CPU_PEAK_MIN_SIZE
    while side < size:
        a = torch.randn(side, side, dtype=torch_dtype)
        torch.mm(a, a)  # warm-up: thread pool and code paths
        start = time.perf_counter()
        torch.mm(a, a)
        if 8 * (time.perf_counter() - start) * repeats > budget_s:  # twice the side: 8x the work
            break
        side *= 2
    return side


@functools.lru_cache(maxsize=None)
def cpu_peak(dtype: str = "float32", repeats: int = 10) -> float:
    """FLOP/s of the best of a few matmuls at the current thread count (measured once a dtype),
    at ``cpu_peak_size``."""
    import torch

    # The same call as device_peak's source line: one cache entry, one probe, the side it names.
    size, torch_dtype = cpu_peak_size(dtype), getattr(torch, dtype)
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
    return cpu_peak(dtype), f"measured: {cpu_peak_size(dtype)}² {dtype} matmul, {torch.get_num_threads()} threads"


def flop_figures(step: Step, timing: Timing) -> dict[str, Any]:
    """FLOPs of one call (counted on an eager twin: compiled kernels bypass the counter)."""
    from bench.workloads.build import build_step

    case = step.case
    if step.is_loop:
        return {}  # an epoch's FLOPs are its train_step's times the batches: not counted again
    eager = step if case.mode == "eager" else build_step(replace(case, mode="eager"),
                                                         compile_backend=timing.compile_backend)
    flops = count_flops(eager)
    peak, source = device_peak(case.device, case.amp if case.amp != "off" else case.dtype)
    achieved = flops / timing.median_s if flops else None
    estimate = decoder_flops(step)
    return dict(flops=flops, flops_per_s=achieved, peak_flops_per_s=peak, peak_source=source,
                peak_share=achieved / peak if achieved and peak else None, flops_estimate=estimate,
                mfu_estimate=estimate / timing.median_s / peak if estimate and peak else None)


# Of a training step's 6 FLOPs per parameter and token (2 forward, 4 backward), what each phase does.
PHASE_SHARE = {"train_step": 1.0, "forward": 1 / 3, "backward": 2 / 3}


def decoder_flops(step: Step) -> float | None:
    """PaLM's estimate of a decoder's FLOPs per call, as nanoGPT's ``estimate_mfu``: per token
    6·N (each parameter's multiply-add, forward and backward) + 12·L·H·Q·T (attention's scores
    and weighted sum, forward and backward), N the parameters less the embeddings used only for
    lookups (positions; a token embedding tied to the output layer counts). None for other
    models and phases."""
    import models

    spec = models.get_spec(step.case.model)
    share = PHASE_SHARE.get(step.case.phase)
    if spec.decoder is None or share is None or not step.tokens_per_call:
        return None
    d, t = spec.decoder, step.case.seq_len or spec.inputs.seq_len
    per_token = 6 * matmul_params(step.model) + 12 * d.layers * d.heads * (d.width // d.heads) * t
    return share * per_token * step.tokens_per_call


def matmul_params(model: Any) -> int:
    """Parameters less those of embeddings that are only looked up (not shared with a layer that
    multiplies by them, as a tied output layer does)."""
    import torch

    lookups = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    used = {id(p) for m in model.modules() if not isinstance(m, torch.nn.Embedding)
            for p in m.parameters(recurse=False)}
    seen: set[int] = set()
    total = 0
    for p in model.parameters():  # each tensor once (a tied weight is one tensor)
        if id(p) not in seen and (id(p) not in lookups or id(p) in used):
            seen.add(id(p))
            total += p.numel()
    return total
