"""Memory of a step, in bytes: what it holds between steps and its peak during one.

held: the tensors a workload keeps between steps — parameters, gradients, optimizer
state, buffers and the input batch — counted once per storage.
peak: the highest total of live tensor bytes during a step.

CPU: held is counted from the tensors themselves; the peak adds, to the held bytes at
the step's start, the running sum of the allocations and frees that torch.profiler
records (``profile_memory=True``). Two steps are profiled and only the second is read:
the profiler cannot see the size of a block allocated before it started, so frees in the
first step (of the previous step's gradients, say) would be missing. Process RSS is never
used: it sees the allocator's caches and the interpreter, not the workload.
CUDA: the caching allocator's own counters (memory_allocated / max_memory_allocated /
max_memory_reserved), reset after warm-up.

This is a pass of its own, after the timed rounds: the profiler never runs while timing.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any, Iterable

from .figures import Figure, Kind, View, declare
from .passes import FunctionPass, builtin

if TYPE_CHECKING:
    import torch

    from .passes import Timing
    from .step import Step

STEP_MARK = "blitzbench::memory_step"

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})
FIGURES = declare(
    Figure("mem_param_bytes", Kind.BYTES, "params", "memory", "bytes of the parameters", views=_H),
    Figure("mem_held_bytes", Kind.BYTES, "held", "memory",
           "tensors kept between steps: parameters, gradients, optimizer state, buffers, the batch", views=_H),
    Figure("mem_peak_bytes", Kind.BYTES, "peak mem", "memory", "most live tensor bytes during a step",
           views=_T),
    Figure("cuda_max_allocated_bytes", Kind.BYTES, "CUDA max allocated", "memory",
           "the caching allocator's peak", deterministic=True, tolerance=0.01, views=_H),
    Figure("cuda_max_reserved_bytes", Kind.BYTES, "CUDA max reserved", "memory", views=_H),
)


def _tensors(step: Step) -> Iterable[torch.Tensor]:
    import torch

    yield from step.model.parameters()
    yield from (p.grad for p in step.model.parameters() if p.grad is not None)
    yield from step.model.buffers()
    if step.optimizer is not None:
        for state in step.optimizer.state.values():
            yield from (v for v in state.values() if torch.is_tensor(v))
    yield from step.batch


def held_bytes(step: Step) -> int:
    """Bytes of the distinct storages the step keeps alive between steps."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for tensor in _tensors(step):
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def parameter_bytes(step: Step) -> int:
    return sum(p.numel() * p.element_size() for p in step.model.parameters())


def cpu_peak_bytes(step: Step) -> int:
    """Held bytes at the second profiled step's start plus its highest allocation surplus."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile, record_function

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True):
        pass  # the first profiler start in a process is slow and allocates; keep it out
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(2):
            with record_function(STEP_MARK):
                step.run()
    events = prof.profiler.kineto_results.events()
    start = max(e.start_ns() for e in events if e.name() == STEP_MARK)
    deltas = sorted((e.start_ns(), e.nbytes()) for e in events
                    if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
                    and e.start_ns() >= start)
    surplus = max(itertools.accumulate(n for _, n in deltas), default=0)
    # Steady state: what is held after the step equals what was held at its start.
    return held_bytes(step) + max(surplus, 0)


def cuda_memory(step: Step) -> dict[str, int]:
    import torch

    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        step.run()
    torch.cuda.synchronize()
    return dict(mem_held_bytes=held, mem_peak_bytes=torch.cuda.max_memory_allocated(),
                cuda_max_allocated_bytes=torch.cuda.max_memory_allocated(),
                cuda_max_reserved_bytes=torch.cuda.max_memory_reserved())


def measure_memory(step: Step) -> dict[str, int | None]:
    """Held and peak bytes (and the allocator's figures on CUDA) for one case's step."""
    figures: dict[str, int | None] = dict(mem_param_bytes=parameter_bytes(step))
    if step.case.device == "cuda":
        figures.update(cuda_memory(step))
    else:
        figures.update(mem_held_bytes=held_bytes(step), mem_peak_bytes=cpu_peak_bytes(step),
                       cuda_max_allocated_bytes=None, cuda_max_reserved_bytes=None)
    return figures


def _memory_pass(step: Step, timing: Timing) -> dict[str, Any]:
    return measure_memory(step)


MEMORY = builtin(FunctionPass("memory", _memory_pass))
