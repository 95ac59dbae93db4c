"""The Fashion-MNIST ``FashionNetwork`` and its variants (seed 001)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model

_FASHION = dict(input_shape=(1, 28, 28), loss="nll", num_classes=10, flatten_input=True)


class FashionNetwork(nn.Module):
    """784 -> 256 -> 128 -> 10 with ReLU and LogSoftmax, optionally with dropout."""

    def __init__(self, dropout: float | None = None) -> None:
        super().__init__()
        self.hidden1 = nn.Linear(784, 256)
        self.hidden2 = nn.Linear(256, 128)
        self.output = nn.Linear(128, 10)
        # The seed writes nn.LogSoftmax() (implicit dim, deprecated); dim=1 is what it means.
        self.log_softmax = nn.LogSoftmax(dim=1)
        self.activation = nn.ReLU()
        # Only the dropout variant has the layer, so print(model) matches the seed's repr.
        self.drop = nn.Dropout(p=dropout) if dropout is not None else None

    def _hidden(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(layer(x))
        return self.drop(x) if self.drop is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._hidden(self.hidden2, self._hidden(self.hidden1, x))
        return self.log_softmax(self.output(x))


class FunctionalFashionNetwork(nn.Module):
    """The seed's functional-API version: F.relu and F.log_softmax, no activation modules."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden1 = nn.Linear(784, 256)
        self.hidden2 = nn.Linear(256, 128)
        self.output = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.hidden1(x))
        x = F.relu(self.hidden2(x))
        return F.log_softmax(self.output(x), dim=1)


@register_model(**_FASHION, tags=("seed", "mlp"), family="seed")
def fashion_mlp() -> nn.Module:
    """FashionNetwork: 784->256->128->10, ReLU, LogSoftmax, NLLLoss (235,146 params)."""
    return FashionNetwork()


@register_model(**_FASHION, tags=("seed", "mlp"), family="seed")
def fashion_mlp_dropout() -> nn.Module:
    """FashionNetwork with Dropout(p=0.25) after each hidden activation."""
    return FashionNetwork(dropout=0.25)


@register_model(**_FASHION, tags=("seed", "mlp"), family="seed")
def fashion_mlp_functional() -> nn.Module:
    """FashionNetwork written with F.relu / F.log_softmax."""
    return FunctionalFashionNetwork()
