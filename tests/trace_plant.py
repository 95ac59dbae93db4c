"""A model for the trace tests: ``--model-module tests.trace_plant`` registers ``slow_op_mlp``, a
small MLP; with ``BLITZBENCH_SLOW_OP=1`` its forward also runs one pairwise L1 distance of the
batch (``torch.cdist``, p=1: ``aten::_cdist_forward`` does the work itself, no matmul), whose
result is dropped. Same name and parameters either way, so both runs' cases line up and
the planted operator is the one difference a trace diff must put first."""

from __future__ import annotations

import os

import torch
from torch import nn

import models


class SlowOpMLP(nn.Module):
    def __init__(self, slow: bool) -> None:
        super().__init__()
        self.hidden = nn.Linear(784, 32)
        self.output = nn.Linear(32, 10)
        self.slow = slow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slow:
            with torch.no_grad():
                rows = x.repeat(4, 1)  # enough work to stand out of the other operators' noise
                torch.cdist(rows, rows, p=1.0)  # the planted operator: work whose result is unused
        return torch.log_softmax(self.output(torch.relu(self.hidden(x))), dim=1)


@models.register_model(input_shape=(1, 28, 28), num_classes=10, loss="nll", flatten_input=True,
                       name="slow_op_mlp", tags=("test",))
def slow_op_mlp() -> nn.Module:
    """784->32->10 MLP; BLITZBENCH_SLOW_OP=1 adds an unused torch.cdist to its forward."""
    return SlowOpMLP(slow=os.environ.get("BLITZBENCH_SLOW_OP") == "1")
