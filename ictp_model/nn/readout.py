"""Per-layer energy readouts from the scalar block (docs/math.md §2.1 step 8)."""

import math

import torch
from torch import Tensor, nn

from .radial import ScaledSiLU


class LinearReadout(nn.Module):
    """Scalars (N, C) -> site energies (N,), bias-free so zero features give zero energy.
    Weights stored N(0, 1), normalised in the forward pass (see nn.radial.ScaledLinear)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(channels))
        self.norm = 1.0 / math.sqrt(channels)

    def forward(self, scalars: Tensor) -> Tensor:
        return torch.matmul(scalars, self.weight * self.norm)


class MLPReadout(nn.Module):
    """Scalars (N, C) -> C -> hidden -> 1 with scaled SiLU, bias-free; used after the last layer."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.first = nn.Parameter(torch.randn(channels, hidden))
        self.second = nn.Parameter(torch.randn(hidden))
        self.first_norm, self.second_norm = 1.0 / math.sqrt(channels), 1.0 / math.sqrt(hidden)
        self.activation = ScaledSiLU()

    def forward(self, scalars: Tensor) -> Tensor:
        hidden = self.activation(torch.matmul(scalars, self.first * self.first_norm))
        return torch.matmul(hidden, self.second * self.second_norm)
