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

import models
from bench.schema.case import Case
from bench.schema.status import NoLoss
from models import Batch
from models.inputs import describe_output

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
    tokens_per_call: int | None = None  # a token loop: the tokens a call handles


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
    batch: Batch | None = None
    # Every floating tensor that must stay finite (the loss; for forward, the outputs),
    # computed eagerly under no_grad.
    check_value: Callable[[], list[torch.Tensor]] | None = None
    items_per_call: int | None = None  # samples per call: the batch size (x micro-batches), or an epoch's
    tokens_per_call: int | None = None  # token workloads: the tokens those samples hold
    rounds: int | None = None  # set for loops (an epoch per call): timed calls, fixed
    state: dict = field(default_factory=dict)  # a loop's records, read by its pass
    workload: "Workload | None" = None  # what the step was built from (the correctness pass reruns it)
    build_s: float = 0.0  # building model, batch, optimizer (and compile wrappers): before the first call

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
        return self.check_value is None or all(bool(torch.isfinite(t).all()) for t in self.check_value())


@dataclass
class Workload:
    """What every phase builder starts from: the case's model, batch, loss and optimizer."""

    case: Case
    model: nn.Module
    run_model: Callable[..., Any]  # the model, compiled in compile mode
    batch: Batch
    optimizer: torch.optim.Optimizer | None
    opt_step: Callable[[], Any]  # optimizer.step, compiled in compile mode
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # None: the model's own loss
    prepare: Callable[[torch.Tensor], torch.Tensor] | None = None  # the seed's view(B, -1), or nothing
    rng_seed: int = 0
    autocast: Callable[[], AbstractContextManager] = nullcontext  # --amp: around forward and loss
    scaler: Any = None  # float16 autocast while training: a torch.amp.GradScaler
    # The train step people write (train_step): gradient accumulation's micro-batches (the batch
    # first), the clipping norm, the LR scheduler stepped after each step.
    micro_batches: list[Batch] = field(default_factory=list)
    clip_grad: float | None = None
    scheduler: Any = None

    @property
    def inputs(self) -> torch.Tensor:
        """The main input: images, or token ids."""
        return self.batch.first

    @property
    def target(self) -> torch.Tensor | None:
        return self.batch.target

    def loss_of(self, output: Any, batch: Batch) -> torch.Tensor:
        """The loss of ``output``: the model's own (its ``loss`` entry or its one 0-dim tensor), or
        the criterion over its prediction (the output, or its ``logits``) and the target."""
        if self.criterion is None:
            loss = models.loss_of(output)
            if loss is None:
                raise NoLoss(f"model {self.case.model!r} is registered with loss='own' but, called with its "
                             f"targets, returned {describe_output(output)}: no 'loss' entry and not exactly "
                             "one 0-dim tensor")
            return loss
        prediction, target = models.prediction(output), batch.target
        if prediction is None:
            raise NoLoss(f"model {self.case.model!r} returned {describe_output(output)}: no tensor for the "
                         "criterion to compare with the target")
        if prediction.dim() > 2 and prediction.dim() == target.dim() + 1 and not target.is_floating_point():
            # Per-token logits (B, T, V) against token ids (B, T): one row per token.
            prediction, target = prediction.reshape(-1, prediction.shape[-1]), target.reshape(-1)
        return self.criterion(prediction, target)

    def loss_on(self, batch: Batch, model: Callable[..., Any] | None = None) -> torch.Tensor:
        """The loss of one forward on ``batch`` (with the graph), under the case's autocast: the model
        called with its targets when it computes its own loss."""
        with self.autocast():
            output = batch.call(model or self.run_model, with_target=self.criterion is None)
            return self.loss_of(output, batch)

    def loss(self) -> torch.Tensor:
        """The loss on the case's batch, through the (compiled) model."""
        return self.loss_on(self.batch)
