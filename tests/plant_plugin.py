"""Plant a known change into a model for gate tests: ``-p tests.plant_plugin`` with
``BLITZBENCH_PLANT=MODEL:slower:FRACTION`` (more work, same parameters) or ``MODEL:wider``
(one more hidden unit: more parameters and FLOPs, about the same time).

The planted model keeps its name, so its cases keep their ids and line up with the baseline.
"""

from __future__ import annotations

import os

import torch
from torch import nn

import models


class DoesMoreWork(nn.Module):
    """Runs the model on the batch plus ``fraction`` more of its rows, in the same call, so
    forward and backward do that much more work; only the batch's own rows are returned.
    (A second, small call would add its fixed per-call overhead, far more than the fraction.)"""

    def __init__(self, inner: nn.Module, fraction: float) -> None:
        super().__init__()
        self.inner = inner
        self.fraction = fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        rows = max(1, round(self.fraction * batch))
        # Tile the batch so that fractions above 1 add that many rows too.
        extra = x.repeat((rows + batch - 1) // batch, *([1] * (x.dim() - 1)))[:rows]
        return self.inner(torch.cat([x, extra]))[:batch]


def _plant(spec: str) -> None:
    name, kind, *rest = spec.split(":")
    original = models.get_spec(name)
    if kind == "slower":
        fraction = float(rest[0])
        builder = lambda: DoesMoreWork(original.build(), fraction)  # noqa: E731
    elif kind == "wider":
        def builder() -> nn.Module:
            model = original.build()
            model.hidden1 = nn.Linear(784, 257)  # one more unit...
            model.hidden2 = nn.Linear(257, 128)  # ...and its outgoing weights
            return model
    else:
        raise ValueError(f"unknown plant {kind!r}; valid: slower, wider")
    models.unregister_model(name)
    models.register_model(input_shape=original.input_shape, loss=original.loss,
                          num_classes=original.num_classes, flatten_input=original.flatten_input,
                          name=name, tags=original.tags)(builder)


if os.environ.get("BLITZBENCH_PLANT"):
    _plant(os.environ["BLITZBENCH_PLANT"])
