"""Channel mixing on block features; the Cartesian components are never touched, so STF blocks
stay STF and the maps are O(3)-equivariant."""

import math

import torch
from torch import Tensor, nn

from .blocks import Block


class BlockLinear(nn.Module):
    """One (C_in -> C_out) matrix per block: y[b] = x[b]ᵀ·W_b / sqrt(C_in), blocks kept in order.

    Shapes: List[(N, C_in, d_b)] -> List[(N, C_out, d_b)].
    """

    def __init__(self, blocks: list[Block], in_channels: int, out_channels: int):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(in_channels, out_channels)) for _ in blocks])
        self.norm = 1.0 / math.sqrt(in_channels)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        for i, w in enumerate(self.weights):
            out.append(torch.matmul(x[i].transpose(1, 2), w * self.norm).transpose(1, 2))
        return out


class SpeciesLinear(nn.Module):
    """Element-dependent channel mixing (the residual "self-connection"):
    y[b]_n = x[b]_nᵀ·W_{b, Z_n} / sqrt(C_in), done as one matmul on (species one-hot ⊗ channels).

    Shapes: List[(N, C_in, d_b)], one-hot (N, S) -> List[(N, C_out, d_b)] for the output blocks.
    ``source`` gives, for each output block, the index of the input block it maps from.
    """

    def __init__(self, source: list[int], num_species: int, in_channels: int, out_channels: int):
        super().__init__()
        self.source = source
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(num_species * in_channels, out_channels)) for _ in source]
        )
        self.norm = 1.0 / math.sqrt(in_channels)

    def forward(self, x: list[Tensor], one_hot: Tensor) -> list[Tensor]:
        out: list[Tensor] = []
        for i, w in enumerate(self.weights):
            h = x[self.source[i]]  # (N, C, d)
            n, c, d = h.shape[0], h.shape[1], h.shape[2]
            mixed = (one_hot.unsqueeze(-1).unsqueeze(-1) * h.unsqueeze(1)).reshape(n, -1, d)
            out.append(torch.matmul(mixed.transpose(1, 2), w * self.norm).transpose(1, 2))
        return out
