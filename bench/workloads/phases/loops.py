"""The loop phases: a call is one pass over the run's DataLoader (``data``: the loader alone;
``epoch``: the seed's training loop over it). Image models read the seed's dataset through
torchvision; token models read windows of a token file (``bench.workloads.tokens``)."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

import models
from bench.workloads import pipeline
from bench.workloads.step import Built, Workload


def _loop(w: Workload, step_fn: Callable[..., float] | None) -> Built:
    """A call that is one pass over the run's DataLoader (the data and epoch phases)."""
    spec = models.get_spec(w.case.model)
    c = w.case
    if spec.tokens:
        length = c.seq_len or spec.inputs.seq_len
        dataset, source = pipeline.token_set(spec.inputs.vocab_size, length)
        tokens_per_call = len(dataset) * length
    else:
        dataset, source = pipeline.training_set(spec.input_shape, c.transforms)
        tokens_per_call = None
    loader = pipeline.make_loader(dataset, pipeline.LoaderSettings(
        batch_size=c.batch_size, num_workers=c.num_workers, pin_memory=c.pin_memory,
        persistent_workers=c.persistent_workers, prefetch_factor=c.prefetch_factor), rng_seed=w.rng_seed)
    state: dict[str, Any] = {"records": [], "source": source}

    def fn() -> None:
        state["records"].append(pipeline.walk(loader, c.device, step_fn))

    return Built(fn, None, items_per_call=len(dataset), rounds=pipeline.current().epochs, state=state,
                 tokens_per_call=tokens_per_call)


def data(w: Workload) -> Built:
    return _loop(w, None)


def epoch(w: Workload) -> Built:
    spec = models.get_spec(w.case.model)
    if spec.tokens:
        return _loop(w, _token_step(w, spec.inputs))
    dtype = getattr(torch, w.case.dtype)
    prepare = w.prepare or (lambda x: x)

    def target(labels: torch.Tensor) -> torch.Tensor:
        # Class labels for NLL; for the blitz's MSE, the one-hot rows of the same labels.
        if isinstance(w.criterion, nn.MSELoss):
            return nn.functional.one_hot(labels, spec.num_classes).to(dtype)
        return labels

    step_fn = pipeline.seed_step(w.run_model, w.criterion, w.optimizer, lambda x: prepare(x.to(dtype)), target)
    return _loop(w, step_fn)


def _token_step(w: Workload, inputs: models.Tokens) -> Callable[[torch.Tensor], float]:
    """The seed's loop body on a batch of token windows: zero_grad, the loss (the model's own, or
    the criterion's over its logits and the next tokens), backward, step, ``loss.item()``."""
    optimizer = w.optimizer

    def step(windows: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = w.loss_on(inputs.from_window(windows))
        loss.backward()
        optimizer.step()
        return loss.item()

    return step
