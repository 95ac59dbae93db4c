"""The step: the callable a case times, with what it closes over, and the workload it is built from.

A phase builder (``bench.workloads.phases``) turns a ``Workload`` (the case's model, batch,
loss and optimizer, built by ``bench.workloads.build``) into the timed function and its
untimed per-round setup. ``Step.run`` is the one place that runs "setup, then call":
warm-up, the FLOP count, the memory and profiling passes and the accuracy check all go
through it. Nothing here times.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from bench.schema.case import Case

# Untimed work before each call (backward: build the graph); returns (args, kwargs) for fn.
Setup = Callable[[], tuple[tuple, dict]]


class Built(NamedTuple):
    """What a phase builder returns: the timed function, its per-call setup, and for a phase
    whose call is a whole loop (an epoch) the items it handles per call and how many calls
    are timed; a builder may return just ``(fn, setup)``."""

    fn: Callable[..., Any]
    setup: Setup | None = None
    items_per_call: int | None = None  # samples a call handles (None: the batch size)
    rounds: int | None = None  # a loop: exactly this many timed calls, after one untimed
    state: dict | None = None  # what the loop records while it runs (per-epoch records)


PhaseBuilder = Callable[["Workload"], "tuple[Callable[..., Any], Setup | None] | Built"]


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA), so a clock read after it sees it finished."""
    if device == "cuda":
        torch.cuda.synchronize()


def _invoke(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@dataclass
class Step:
    """The callable to time for one case, with what it closes over."""

    case: Case
    fn: Callable[..., Any]
    setup: Setup | None
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    param_count: int
    batch: tuple[torch.Tensor, ...] = ()
    # The loss (or, for forward, the output) computed eagerly under no_grad, for finiteness checks.
    check_value: Callable[[], torch.Tensor] | None = None
    items_per_call: int | None = None  # samples per call: the batch size, or an epoch's images
    rounds: int | None = None  # set for loops (an epoch per call): timed calls, fixed
    state: dict = field(default_factory=dict)  # a loop's records, read by its pass
    workload: "Workload | None" = None  # what the step was built from (the correctness pass reruns it)

    @property
    def is_loop(self) -> bool:
        """A call is a whole loop over a DataLoader, not one step on a made batch."""
        return self.rounds is not None

    def run(self, call: Callable[..., Any] = _invoke, *,
            setup_scope: AbstractContextManager | None = None) -> Any:
        """One execution: the setup (if any, inside ``setup_scope``), then ``call(fn, *args, **kwargs)``.

        ``call`` wraps the timed part only: a stopwatch (warm-up), a FLOP counter, a profiler
        label, or ``functools.partial`` to get the bound call without running it.
        """
        if self.setup is None:
            return call(self.fn)
        with setup_scope or nullcontext():
            args, kwargs = self.setup()
        return call(self.fn, *args, **kwargs)

    def is_finite(self) -> bool:
        return self.check_value is None or bool(torch.isfinite(self.check_value()).all())


@dataclass
class Workload:
    """What every phase builder starts from: the case's model, batch, loss and optimizer."""

    case: Case
    model: nn.Module
    run_model: Callable[[torch.Tensor], torch.Tensor]  # the model, compiled in compile mode
    inputs: torch.Tensor
    target: torch.Tensor
    loss: Callable[[], torch.Tensor]  # criterion(run_model(inputs), target), with the graph
    optimizer: torch.optim.Optimizer | None
    opt_step: Callable[[], Any]  # optimizer.step, compiled in compile mode
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None  # the seed's view(B, -1), or nothing
    rng_seed: int = 0
    autocast: Callable[[], AbstractContextManager] = nullcontext  # --amp: around forward and loss
    scaler: Any = None  # float16 autocast while training: a torch.amp.GradScaler
