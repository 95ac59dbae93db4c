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

from bench.schema.figures import Figure, Kind, View

if TYPE_CHECKING:
    import torch

    from bench.passes.base import Timing
    from bench.workloads.step import Step

STEP_MARK = "blitzbench::memory_step"

_T, _H = frozenset({View.TABLE, View.HISTORY}), frozenset({View.HISTORY})
FIGURES = (
    Figure("mem_param_bytes", Kind.BYTES, "params", "memory", "bytes of the parameters", views=_H),
    Figure("mem_held_bytes", Kind.BYTES, "held", "memory",
           "tensors kept between steps: parameters, gradients, optimizer state, buffers, the batch", views=_H),
    Figure("mem_peak_bytes", Kind.BYTES, "peak mem", "memory", "most live tensor bytes during a step",
           views=_T),
    # The breakdown of a step's memory (with mem_param_bytes): what it holds, and its peak's surplus.
    Figure("mem_grad_bytes", Kind.BYTES, "gradients", "memory", "bytes of the gradients held after a step",
           views=_H),
    Figure("mem_optimizer_bytes", Kind.BYTES, "optimizer state", "memory",
           "bytes of the optimizer's state (moments, step counters)", views=_H),
    Figure("mem_activation_bytes", Kind.BYTES, "activations", "memory",
           "peak minus what is held at the step's start: activations and temporaries", views=_H),
    Figure("cuda_max_allocated_bytes", Kind.BYTES, "CUDA max allocated", "memory",
           "the caching allocator's peak", deterministic=True, tolerance=0.01, views=_H),
    Figure("cuda_max_reserved_bytes", Kind.BYTES, "CUDA max reserved", "memory", views=_H),
)


def _grads(step: Step) -> Iterable[torch.Tensor]:
    return (p.grad for p in step.model.parameters() if p.grad is not None)


def _optimizer_state(step: Step) -> Iterable[torch.Tensor]:
    import torch

    if step.optimizer is not None:
        for state in step.optimizer.state.values():
            yield from (v for v in state.values() if torch.is_tensor(v))


def _tensors(step: Step) -> Iterable[torch.Tensor]:
    yield from step.model.parameters()
    yield from _grads(step)
    yield from step.model.buffers()
    yield from _optimizer_state(step)
    if step.batch is not None:
        yield from step.batch.tensors()
    if step.workload is not None:  # gradient accumulation's other micro-batches
        for batch in step.workload.micro_batches[1:]:
            yield from batch.tensors()


def storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a view counts with its base, once)."""
    seen: set[tuple[str, int]] = set()
    total = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr())
        if key not in seen:
            seen.add(key)
            total += storage.nbytes()
    return total


def held_bytes(step: Step) -> int:
    """Bytes of the distinct storages the step keeps alive between steps."""
    return storage_bytes(_tensors(step))


def parameter_bytes(step: Step) -> int:
    return sum(p.numel() * p.element_size() for p in step.model.parameters())


def cpu_peak_surplus(step: Step) -> int:
    """The second profiled step's highest allocation surplus over what was held at its start."""
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
    return max(max(itertools.accumulate(n for _, n in deltas), default=0), 0)


def cuda_memory(step: Step) -> dict[str, int]:
    import torch

    torch.cuda.synchronize()
    held = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in range(2):
        step.run()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return dict(mem_held_bytes=held, mem_peak_bytes=peak, mem_activation_bytes=max(peak - held, 0),
                cuda_max_allocated_bytes=peak, cuda_max_reserved_bytes=torch.cuda.max_memory_reserved())


def cpu_memory(step: Step) -> dict[str, int | None]:
    surplus = cpu_peak_surplus(step)
    # Steady state: what is held after the step equals what was held at its start.
    held = held_bytes(step)
    return dict(mem_held_bytes=held, mem_peak_bytes=held + surplus, mem_activation_bytes=surplus,
                cuda_max_allocated_bytes=None, cuda_max_reserved_bytes=None)


def measure_memory(step: Step) -> dict[str, int | None]:
    """Held and peak bytes, their breakdown (parameters, gradients, optimizer state,
    activations) and, on CUDA, the allocator's figures, for one case's step."""
    figures = cuda_memory(step) if step.case.device == "cuda" else cpu_memory(step)
    # Read after the profiled steps: the gradients and optimizer state of the steady state.
    figures.update(mem_param_bytes=parameter_bytes(step), mem_grad_bytes=storage_bytes(_grads(step)),
                   mem_optimizer_bytes=storage_bytes(_optimizer_state(step)))
    return figures


def memory_figures(step: Step, timing: Timing) -> dict[str, Any]:
    # A loop's call is a whole epoch: its memory is not one step's (the epoch case's train_step
    # twin has the step's figures).
    return {} if step.is_loop else measure_memory(step)
