"""The model registry: one decorated builder function per model.

An entry carries what a benchmark needs besides the module itself: the shape of one
example input, the loss the seed tutorial uses, and the number of classes. Builders
are plain functions so that adding a model is one decorated function.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

LOSSES = ("mse", "nll")


@dataclass(frozen=True)
class ModelSpec:
    """What the harness needs to know to run a model."""

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    loss: str  # a key of LOSSES
    num_classes: int
    flatten_input: bool = False  # the seed reshapes images with view(B, -1) before the model
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)

    def build(self, **kwargs) -> nn.Module:
        return self.builder(**kwargs)

    def make_criterion(self) -> nn.Module:
        return nn.MSELoss() if self.loss == "mse" else nn.NLLLoss()

    def make_batch(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        rng_seed: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A synthetic batch (inputs, target) shaped as the seed's data; no downloads.

        ``rng_seed`` seeds the random numbers ("seed" alone means the tutorials)."""
        gen = torch.Generator().manual_seed(rng_seed)
        inputs = torch.randn((batch_size, *self.input_shape), generator=gen)
        if self.loss == "mse":
            # The blitz regresses the 10 outputs onto a random target of the same shape.
            target = torch.randn((batch_size, self.num_classes), generator=gen).to(dtype)
        else:
            target = torch.randint(0, self.num_classes, (batch_size,), generator=gen)
        return inputs.to(device=device, dtype=dtype), target.to(device)

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        """Reshape a batch the way the seed's training loop does before calling the model."""
        return inputs.view(inputs.shape[0], -1) if self.flatten_input else inputs


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    *,
    input_shape: tuple[int, ...],
    loss: str,
    num_classes: int,
    flatten_input: bool = False,
    name: str | None = None,
    tags: tuple[str, ...] = (),
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under its function name (or ``name``)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = (builder.__doc__ or "").strip().splitlines()
        _REGISTRY[key] = ModelSpec(
            name=key,
            builder=builder,
            input_shape=tuple(input_shape),
            loss=loss,
            num_classes=num_classes,
            flatten_input=flatten_input,
            description=doc[0] if doc else "",
            tags=tuple(tags),
        )
        return builder

    return decorator


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names in registration order, optionally filtered by a glob."""
    names = list(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}") from None


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a fresh instance of a registered model."""
    return get_spec(name).build(**kwargs)


def unregister_model(name: str) -> None:
    """Remove an entry; for tests and plugins that register temporary variants."""
    _REGISTRY.pop(name, None)
