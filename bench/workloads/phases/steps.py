"""The step phases: one step on a made batch (``forward``, ``backward``, ``optimizer_step``,
``train_step``). Each builder takes the case's ``Workload`` and returns the timed function and
its untimed per-round setup (or None)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from bench.workloads.step import Setup, Workload


def forward(w: Workload) -> tuple[Callable[..., Any], None]:
    # Inference: the model on its inputs alone (a model that computes its own loss is not given
    # its targets: forward times the forward, not the loss).
    run_model, batch, autocast = w.run_model, w.batch, w.autocast

    def fn() -> Any:
        with torch.no_grad(), autocast():
            return batch.call(run_model)

    return fn, None


def backward(w: Workload) -> tuple[Callable[..., Any], Setup]:
    model, loss, scaler = w.model, w.loss, w.scaler

    def setup() -> tuple[tuple, dict]:
        model.zero_grad(set_to_none=True)
        return (loss() if scaler is None else scaler.scale(loss()),), {}

    def fn(graph_loss: torch.Tensor) -> None:
        graph_loss.backward()

    return fn, setup


def optimizer_step(w: Workload) -> tuple[Callable[..., Any], None]:
    # Gradients are made once; each timed call applies the step to the same gradients.
    if w.scaler is None:
        w.loss().backward()
    else:  # float16: scaled backward, then the true gradients once, outside the timed step
        w.scaler.scale(w.loss()).backward()
        w.scaler.unscale_(w.optimizer)
    return w.opt_step, None


def train_step(w: Workload) -> tuple[Callable[..., Any], None]:
    optimizer, loss, opt_step, scaler = w.optimizer, w.loss, w.opt_step, w.scaler
    plain = len(w.micro_batches) <= 1 and w.clip_grad is None and w.scheduler is None

    if scaler is None and plain:
        def fn() -> None:
            # The seed's loop body: zero_grad -> forward -> loss -> backward -> step.
            optimizer.zero_grad(set_to_none=True)
            loss().backward()
            opt_step()

        return fn, None
    return _written_step(w), None


def _written_step(w: Workload) -> Callable[[], None]:
    """The train step people write: gradients accumulated over the micro-batches (each loss
    divided by their number, so the step sees their mean), optionally scaled (float16), clipped
    to a total norm, the optimizer step (skipped by the scaler when not finite), then the LR
    scheduler's step."""
    optimizer, opt_step, scaler, scheduler = w.optimizer, w.opt_step, w.scaler, w.scheduler
    micro, clip, params = w.micro_batches or [w.batch], w.clip_grad, list(w.model.parameters())
    scale = 1.0 / len(micro)

    def fn() -> None:
        optimizer.zero_grad(set_to_none=True)
        for batch in micro:
            loss = w.loss_on(batch) * scale if scale != 1.0 else w.loss_on(batch)
            (loss if scaler is None else scaler.scale(loss)).backward()
        if clip is not None:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, as torch.amp's recipe says
            torch.nn.utils.clip_grad_norm_(params, clip)
        if scaler is None:
            opt_step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if scheduler is not None:
            scheduler.step()

    return fn
