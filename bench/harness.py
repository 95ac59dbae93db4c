"""Build the timed step for a case and measure it with pytest-benchmark.

Layers, as in torch.utils.benchmark: ``build_step`` makes the callable (no timing),
``measure`` drives pytest-benchmark (timing and statistics), and the figures go into
``benchmark.extra_info`` as plain numbers in seconds; nothing here formats a number.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from torch import nn

import models
from reports.stats import summarize

from . import compile_watch
from .cases import Case
from .faults import NonFiniteLoss, UnsupportedCase
from .flops import count_flops, device_peak
from .memory import measure_memory
from .optimizers import make_optimizer, supported_devices

WARMUP_CALLS = 3  # after the first (compiling) call, before calibration


def cuda_available() -> bool:
    return torch.cuda.is_available()


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def synced_perf_counter() -> float:
    """pytest-benchmark timer for CUDA cases: waits for queued GPU work, then reads the clock.

    pytest-benchmark calls the timer only at the start and end of a round, so the
    synchronization happens at the edges of each round and never inside its loop.
    """
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


@dataclass
class Step:
    """The callable to time for one case, with what it closes over."""

    case: Case
    fn: Callable[..., Any]
    # Untimed work before each round (backward: build the graph); returns (args, kwargs) for fn.
    setup: Callable[[], tuple[tuple, dict]] | None
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    param_count: int
    batch: tuple[torch.Tensor, ...] = ()
    # The loss (or, for forward, the output) computed eagerly under no_grad, for finiteness checks.
    check_value: Callable[[], torch.Tensor] | None = None

    def __call__(self) -> Any:
        """One full execution: setup (if any) then the timed function."""
        if self.setup is None:
            return self.fn()
        args, kwargs = self.setup()
        return self.fn(*args, **kwargs)


def check_supported(case: Case) -> None:
    devices = supported_devices(case.optimizer) if case.optimizer else None
    if devices is not None and case.device not in devices:
        raise UnsupportedCase(
            f"optimizer {case.optimizer!r} does not run on {case.device}; it supports {', '.join(devices)}"
        )


def build_step(case: Case, seed: int = 0, compile_backend: str = "inductor") -> Step:
    """Model, data, loss and optimizer on the case's device, and the callable for its phase."""
    check_supported(case)
    spec = models.get_spec(case.model)
    dtype = getattr(torch, case.dtype)
    torch.manual_seed(seed)
    model = spec.build().to(device=case.device, dtype=dtype)
    inputs, target = spec.make_batch(case.batch_size, case.device, dtype, seed=seed)
    inputs = spec.prepare(inputs)  # the seed's view(B, -1), done once outside the timed region
    criterion = spec.make_criterion()
    params = list(model.parameters())
    param_count = sum(p.numel() for p in params)

    # Dropout is active where gradients are taken (train) and off for inference (eval).
    model.train(case.phase != "forward")
    run_model: Callable[[torch.Tensor], torch.Tensor] = (
        torch.compile(model, backend=compile_backend) if case.mode == "compile" else model
    )

    def loss() -> torch.Tensor:
        return criterion(run_model(inputs), target)

    optimizer = make_optimizer(case.optimizer, params) if case.optimizer else None
    opt_step: Callable[[], Any] = optimizer.step if optimizer else (lambda: None)
    if optimizer is not None and case.mode == "compile":
        opt_step = torch.compile(optimizer.step, backend=compile_backend)

    setup: Callable[[], tuple[tuple, dict]] | None = None
    if case.phase == "forward":

        def fn() -> torch.Tensor:
            with torch.no_grad():
                return run_model(inputs)

    elif case.phase == "backward":

        def setup() -> tuple[tuple, dict]:
            model.zero_grad(set_to_none=True)
            return (loss(),), {}

        def fn(graph_loss: torch.Tensor) -> None:
            graph_loss.backward()

    elif case.phase == "optimizer_step":
        # Gradients are made once; each timed call applies the step to the same gradients.
        loss().backward()
        fn = opt_step

    elif case.phase == "train_step":

        def fn() -> None:
            # The seed's loop body: zero_grad -> forward -> loss -> backward -> step.
            optimizer.zero_grad()
            loss().backward()
            opt_step()

    else:  # pragma: no cover - Case validation rejects this earlier
        raise ValueError(f"unknown phase {case.phase!r}")

    def check_value() -> torch.Tensor:
        # Eager and without grad, so checking never triggers a compile or touches gradients.
        with torch.no_grad():
            out = model(inputs)
            return out if case.phase == "forward" else criterion(out, target)

    return Step(case=case, fn=fn, setup=setup, model=model, optimizer=optimizer,
                param_count=param_count, batch=(inputs, target), check_value=check_value)


def is_finite(step: Step) -> bool:
    return step.check_value is None or bool(torch.isfinite(step.check_value()).all())


def first_call(step: Step) -> float:
    """Run the step once, synchronized; for compiled cases this is the cold compile."""
    synchronize(step.case.device)
    start = time.perf_counter()
    step()
    synchronize(step.case.device)
    return time.perf_counter() - start


def warm_up(step: Step, calls: int = WARMUP_CALLS) -> float:
    """Warm-up calls; returns the mean duration of the timed part, to plan pedantic rounds."""
    total = 0.0
    for _ in range(calls):
        args, kwargs = step.setup() if step.setup else ((), {})
        synchronize(step.case.device)
        start = time.perf_counter()
        step.fn(*args, **kwargs)
        synchronize(step.case.device)
        total += time.perf_counter() - start
    return total / calls


def pedantic_rounds(per_call_s: float, max_time: float, min_rounds: int) -> int:
    """Rounds for a setup-per-round benchmark, budgeted like pytest-benchmark's calibration."""
    return max(min_rounds, min(100_000, math.ceil(max_time / max(per_call_s, 1e-9))))


def measure(benchmark: Any, case: Case, *, max_time: float, min_rounds: int,
            compile_backend: str = "inductor") -> Step:
    """Warm up outside pytest-benchmark, let it time the step, then the untimed passes.

    Order: first (compiling) call -> warm-up -> finiteness check -> timed rounds, watched
    for recompiles -> statistics of the raw rounds -> memory pass -> FLOP count. Figures go
    to ``benchmark.extra_info``; failures raise (see ``bench.faults``) and become result rows.
    """
    step = build_step(case, compile_backend=compile_backend)
    before = compile_watch.snapshot()
    first_s = first_call(step)
    after_first = compile_watch.snapshot()
    per_call_s = warm_up(step)
    if not is_finite(step):
        raise NonFiniteLoss(f"{'output' if case.phase == 'forward' else 'loss'} is not finite after warm-up")
    after_warm_up = compile_watch.snapshot()
    if step.setup is None:
        benchmark(step.fn)
    else:
        rounds = pedantic_rounds(per_call_s, max_time, min_rounds)
        benchmark.pedantic(step.fn, setup=step.setup, rounds=rounds, iterations=1)
    timed = compile_watch.snapshot().since(after_warm_up)
    stats = benchmark.stats.stats
    info: dict[str, Any] = dict(
        case.as_dict(), case_id=case.id, status="ok", invalid_reason=None,
        param_count=step.param_count, first_call_s=first_s,
        compile_time_s=first_s if case.mode == "compile" else None,
        # optimizer_step touches parameters, not samples: no throughput for it.
        samples_per_s=None if case.phase == "optimizer_step" else case.batch_size / stats.median,
        torch_version=torch.__version__, num_threads=torch.get_num_threads(), pid=os.getpid(),
        # Other busy processes make OpenMP threads wait on each other: keep the load beside the time.
        load_avg_1m=os.getloadavg()[0],
        compile_backend=compile_backend if case.mode == "compile" else None,
    )
    info.update(summarize(stats.data, iqr=stats.iqr))
    if case.mode == "compile":
        info.update(compile_figures(after_first.since(before), compile_watch.snapshot().since(after_first)))
    if timed.frames:
        reasons = "; ".join(timed.guard_failures[:3]) or "no guard failure recorded"
        info.update(status="invalid", invalid_reason=(
            f"recompiled {timed.frames} time(s) during the timed rounds ({reasons})"))
    elif not is_finite(step):
        info.update(status="invalid", invalid_reason="the loss became non-finite during the timed rounds")
    benchmark.extra_info.update(info)
    benchmark.extra_info.update(measure_memory(step))
    benchmark.extra_info.update(flop_figures(case, stats.median, compile_backend))
    return step


def compile_figures(first: compile_watch.CompileDelta, later: compile_watch.CompileDelta) -> dict[str, Any]:
    """Graphs and breaks of the cold compile; every frame compiled after it is a recompile."""
    return dict(graph_count=first.graphs + later.graphs, graph_break_count=sum(first.breaks.values()),
                graph_breaks=first.break_reasons, recompiles=later.frames,
                recompile_reasons=later.guard_failures[:5])


def flop_figures(case: Case, median_s: float, compile_backend: str) -> dict[str, Any]:
    """FLOPs of one call (counted on an eager twin: compiled kernels bypass the counter)."""
    flops = count_flops(build_step(replace(case, mode="eager"), compile_backend=compile_backend))
    peak, source = device_peak(case.device, case.dtype)
    achieved = flops / median_s if flops else None
    return dict(flops=flops, flops_per_s=achieved, peak_flops_per_s=peak, peak_source=source,
                peak_share=achieved / peak if achieved and peak else None)


@dataclass
class Runner:
    """Per-test measuring handle; keeps the last step so a check can time the same callable."""

    max_time: float
    min_rounds: int
    compile_backend: str = "inductor"
    last_step: Step | None = None

    def measure(self, benchmark: Any, case: Case) -> Step:
        self.last_step = measure(benchmark, case, max_time=self.max_time, min_rounds=self.min_rounds,
                                 compile_backend=self.compile_backend)
        return self.last_step
