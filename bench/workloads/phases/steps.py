"""The step phases: one step on a made batch (``forward``, ``backward``, ``optimizer_step``,
``train_step``). Each builder takes the case's ``Workload`` and returns the timed function and
its untimed per-round setup (or None)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from bench.workloads.step import Setup, Workload


def forward(w: Workload) -> tuple[Callable[..., Any], None]:
    run_model, inputs, autocast = w.run_model, w.inputs, w.autocast

    def fn() -> torch.Tensor:
        with torch.no_grad(), autocast():
            return run_model(inputs)

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

    if scaler is not None:
        def scaled() -> None:
            # torch.amp's float16 recipe: scale the loss, unscale and skip non-finite steps.
            optimizer.zero_grad()
            scaler.scale(loss()).backward()
            scaler.step(optimizer)
            scaler.update()

        return scaled, None

    def fn() -> None:
        # The seed's loop body: zero_grad -> forward -> loss -> backward -> step.
        optimizer.zero_grad()
        loss().backward()
        opt_step()

    return fn, None
