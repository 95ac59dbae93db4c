"""The optimizer registry: name -> factory taking the model's parameters."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

_REGISTRY: dict[str, OptimizerFactory] = {}
_DEVICES: dict[str, tuple[str, ...] | None] = {}


def register_optimizer(
    name: str, devices: tuple[str, ...] | None = None
) -> Callable[[OptimizerFactory], OptimizerFactory]:
    """Register ``factory(params) -> Optimizer`` under ``name``; ``devices`` limits where it runs."""

    def decorator(factory: OptimizerFactory) -> OptimizerFactory:
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is already registered")
        _REGISTRY[name] = factory
        _DEVICES[name] = tuple(devices) if devices else None
        return factory

    return decorator


def unregister_optimizer(name: str) -> None:
    """Remove an entry; for tests and plugins that register temporary optimizers."""
    _REGISTRY.pop(name, None)
    _DEVICES.pop(name, None)


def list_optimizers() -> list[str]:
    return list(_REGISTRY)


def supported_devices(name: str) -> tuple[str, ...] | None:
    """The devices an optimizer runs on; None means all."""
    return _DEVICES.get(name)


def make_optimizer(name: str, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}; known optimizers: {', '.join(_REGISTRY)}"
        ) from None
    return factory(params)


class ManualSGD(torch.optim.Optimizer):
    """The blitz's hand-written update, ``f.data.sub_(f.grad.data * learning_rate)``.

    Wrapped as an Optimizer so the harness drives it like the others (zero_grad, step).
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 0.01) -> None:
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            for f in group["params"]:
                if f.grad is not None:
                    f.data.sub_(f.grad.data * group["lr"])
        return None


register_optimizer("manual_sgd")(lambda params: ManualSGD(params, lr=0.01))
register_optimizer("sgd")(lambda params: torch.optim.SGD(params, lr=0.01))
register_optimizer("nesterov")(
    lambda params: torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
)
register_optimizer("adam")(lambda params: torch.optim.Adam(params))  # seed: defaults
register_optimizer("adamw")(lambda params: torch.optim.AdamW(params))
register_optimizer("rmsprop")(lambda params: torch.optim.RMSprop(params))
register_optimizer("adagrad")(lambda params: torch.optim.Adagrad(params))
register_optimizer("adadelta")(lambda params: torch.optim.Adadelta(params))
