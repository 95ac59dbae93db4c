"""Build the timed step for a case and measure it with pytest-benchmark.

Layers, as in torch.utils.benchmark: ``build_step`` makes the callable (no timing),
``measure`` drives pytest-benchmark (timing and statistics), and the figures go into
``benchmark.extra_info`` as plain numbers in seconds; nothing here formats a number.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

import models

from .cases import Case
from .optimizers import make_optimizer

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
    info: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        """One full execution: setup (if any) then the timed function."""
        if self.setup is None:
            return self.fn()
        args, kwargs = self.setup()
        return self.fn(*args, **kwargs)


def build_step(case: Case, seed: int = 0) -> Step:
    """Model, data, loss and optimizer on the case's device, and the callable for its phase."""
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
        torch.compile(model) if case.mode == "compile" else model
    )

    def loss() -> torch.Tensor:
        return criterion(run_model(inputs), target)

    optimizer = make_optimizer(case.optimizer, params) if case.optimizer else None
    opt_step: Callable[[], Any] = optimizer.step if optimizer else (lambda: None)
    if optimizer is not None and case.mode == "compile":
        opt_step = torch.compile(optimizer.step)

    setup = None
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

    return Step(case=case, fn=fn, setup=setup, model=model, optimizer=optimizer,
                param_count=param_count)


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


def measure(benchmark: Any, case: Case, *, max_time: float, min_rounds: int) -> Step:
    """Warm up outside pytest-benchmark, then let it time the step; fill ``extra_info``."""
    step = build_step(case)
    first_s = first_call(step)
    per_call_s = warm_up(step)
    if step.setup is None:
        benchmark(step.fn)
    else:
        rounds = pedantic_rounds(per_call_s, max_time, min_rounds)
        benchmark.pedantic(step.fn, setup=step.setup, rounds=rounds, iterations=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        case.as_dict(),
        case_id=case.id,
        status="ok",
        param_count=step.param_count,
        first_call_s=first_s,
        compile_time_s=first_s if case.mode == "compile" else None,
        # optimizer_step touches parameters, not samples: no throughput for it.
        samples_per_s=None if case.phase == "optimizer_step" else case.batch_size / median,
        torch_version=torch.__version__,
        num_threads=torch.get_num_threads(),
    )
    return step


@dataclass
class Runner:
    """Per-test measuring handle; keeps the last step so a check can time the same callable."""

    max_time: float
    min_rounds: int
    last_step: Step | None = None

    def measure(self, benchmark: Any, case: Case) -> Step:
        self.last_step = measure(benchmark, case, max_time=self.max_time, min_rounds=self.min_rounds)
        return self.last_step
