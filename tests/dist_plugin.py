"""Test-only models for distributed runs, loaded with ``--model-module tests.dist_plugin``.

``dying_mlp``: a small MLP whose highest rank leaves (``os._exit(3)``, as a killed process
would: no traceback, no error file) at its fourth forward call when the world has more
than one rank; on one rank it runs like any model. ``tiny_mlp``: the same model, which
never dies (cheap to build on every rank).
"""

from __future__ import annotations

import os

import torch
from torch import nn

import models

DIE_AT_CALL = 4


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(784, 10)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.lin(x), dim=1)


class DyingMLP(TinyMLP):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and int(os.environ.get("RANK", "0")) == world - 1 and self.calls == DIE_AT_CALL:
            os._exit(3)
        return super().forward(x)


_MLP = dict(input_shape=(1, 28, 28), loss="nll", num_classes=10, flatten_input=True)
models.register_model(**_MLP, name="tiny_mlp")(TinyMLP)
models.register_model(**_MLP, name="dying_mlp")(DyingMLP)
