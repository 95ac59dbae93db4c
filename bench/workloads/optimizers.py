"""The optimizer registry: name -> factory taking the model's parameters.

Besides the seed's optimizers (what the presets run) it holds other implementations of the
same updates: torch.optim's ``foreach`` (multi-tensor) and ``fused`` (one kernel) variants,
``adam_foreach``, ``adam_fused``... They are not seed optimizers, so presets keep their size;
``python -m bench tune`` and ``--optimizers`` select them.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

import torch
from torch import nn

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]

_REGISTRY: dict[str, OptimizerFactory] = {}
# Why an optimizer cannot run on a device (None: it can); asked once per device.
DeviceCheck = Callable[[str], "str | None"]
_DEVICES: dict[str, tuple[str, ...] | None] = {}
_CHECKS: dict[str, DeviceCheck] = {}
_SEED: dict[str, bool] = {}
# The implementations of one update, suffixed to its name: adam -> adam_foreach, adam_fused.
IMPLEMENTATIONS = ("foreach", "fused")


def register_optimizer(
    name: str, devices: tuple[str, ...] | None = None, *, seed: bool = True, check: DeviceCheck | None = None
) -> Callable[[OptimizerFactory], OptimizerFactory]:
    """Register ``factory(params) -> Optimizer`` under ``name``; ``devices`` limits where it runs,
    ``check(device)`` says why it cannot run on a device (a torch without the kernel), and
    ``seed=False`` keeps it out of the presets (selected by name only)."""

    def decorator(factory: OptimizerFactory) -> OptimizerFactory:
        if name in _REGISTRY:
            raise ValueError(f"optimizer {name!r} is already registered")
        _REGISTRY[name] = factory
        _DEVICES[name] = tuple(devices) if devices else None
        _SEED[name] = seed
        if check is not None:
            _CHECKS[name] = check
        return factory

    return decorator


def unregister_optimizer(name: str) -> None:
    """Remove an entry; for tests and plugins that register temporary optimizers."""
    for table in (_REGISTRY, _DEVICES, _SEED, _CHECKS):
        table.pop(name, None)


def list_optimizers() -> list[str]:
    return list(_REGISTRY)


def seed_optimizers() -> list[str]:
    """The optimizers the presets run: every entry but the other implementations of one."""
    return [name for name in _REGISTRY if _SEED[name]]


def implementations(name: str) -> list[str]:
    """``name`` and its registered implementations: ``adam`` -> adam, adam_foreach, adam_fused."""
    return [name, *(f"{name}_{impl}" for impl in IMPLEMENTATIONS if f"{name}_{impl}" in _REGISTRY)]


def supported_devices(name: str) -> tuple[str, ...] | None:
    """The devices an optimizer runs on; None means all."""
    return _DEVICES.get(name)


def unavailable_reason(name: str, device: str) -> str | None:
    """Why optimizer ``name`` cannot run on ``device`` with this torch (a fused kernel it lacks),
    or None. Unlike ``supported_devices`` (by design), this depends on the installed torch."""
    check = _CHECKS.get(name)
    return check(device) if check is not None else None


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


@functools.lru_cache(maxsize=None)
def fused_problem(cls_name: str, device: str) -> str | None:
    """Why ``torch.optim.<cls_name>(fused=True)`` does not step on ``device`` with this torch,
    or None. Tried on a one-element parameter: which devices have fused kernels changed across
    torch versions (CPU ones arrived in 2.4), and older versions only refuse at the first step."""
    if device == "cuda" and not torch.cuda.is_available():
        return None  # not tried here: CUDA cases skip on this machine anyway
    try:
        param = torch.zeros(1, device=device, requires_grad=True)
        param.grad = torch.zeros_like(param)
        getattr(torch.optim, cls_name)([param], lr=0.01, fused=True).step()
    except (RuntimeError, TypeError, ValueError) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        return f"torch {torch.__version__} has no fused {cls_name} on {device}: {first[:200]}"
    return None


# The same updates as adam, adamw and sgd, by torch.optim's other implementations. (Plain adam
# already picks foreach by itself on CUDA; on CPU it is the per-parameter loop.)
for _name, _cls, _kwargs in (("adam", torch.optim.Adam, {}), ("adamw", torch.optim.AdamW, {}),
                             ("sgd", torch.optim.SGD, {"lr": 0.01})):
    register_optimizer(f"{_name}_foreach", seed=False)(functools.partial(_cls, **_kwargs, foreach=True))
    register_optimizer(f"{_name}_fused", seed=False, check=functools.partial(fused_problem, _cls.__name__))(
        functools.partial(_cls, **_kwargs, fused=True))
