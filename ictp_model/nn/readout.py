"""Per-layer energy readouts from the scalar block (math.md §2.1 step 8)."""

import math

import torch
from torch import Tensor, nn

from .radial import ScaledSiLU


class LinearReadout(nn.Module):
    """Scalars (N, C) -> site energies (N,), bias-free so zero features give zero energy."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels) / math.sqrt(channels))

    def forward(self, scalars: Tensor) -> Tensor:
        return torch.matmul(scalars, self.weight)


class MLPReadout(nn.Module):
    """Scalars (N, C) -> C -> hidden -> 1 with scaled SiLU, bias-free; used after the last layer."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.first = nn.Parameter(torch.randn(channels, hidden) / math.sqrt(channels))
        self.second = nn.Parameter(torch.randn(hidden) / math.sqrt(hidden))
        self.activation = ScaledSiLU()

    def forward(self, scalars: Tensor) -> Tensor:
        return torch.matmul(self.activation(torch.matmul(scalars, self.first)), self.second)
