"""The "60-minute blitz" LeNet (seeds 000, 003) and its 3x3 variant (seed 004)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._registry import register_model


class Net(nn.Module):
    """The blitz ``Net``: two conv + max-pool blocks, then three linear layers."""

    def __init__(self, kernel_size: int = 5, flat_side: int = 5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size)
        self.conv2 = nn.Conv2d(6, 16, kernel_size)
        self.fc1 = nn.Linear(16 * flat_side * flat_side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@register_model(input_shape=(1, 32, 32), loss="mse", num_classes=10, tags=("seed", "cnn"), family="seed")
def lenet() -> nn.Module:
    """Blitz LeNet-5: conv 1->6 5x5, conv 6->16 5x5, fc 400->120->84->10 (61,706 params)."""
    return Net(kernel_size=5, flat_side=5)


@register_model(input_shape=(1, 32, 32), loss="mse", num_classes=10, tags=("seed", "cnn"), family="seed")
def lenet3x3() -> nn.Module:
    """Blitz notebook variant: 3x3 convolutions, fc1 576->120 (81,194 params)."""
    return Net(kernel_size=3, flat_side=6)
