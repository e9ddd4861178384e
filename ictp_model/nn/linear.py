"""Channel mixing on block features; the Cartesian components are never touched, so STF blocks
stay STF and the maps are O(3)-equivariant."""

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ictp_model.tensor.blocks import Block


class BlockLinear(nn.Module):
    """One (C_in -> C_out) matrix per block: y[b] = x[b]ᵀ·W_b / sqrt(C_in), blocks kept in order.

    Shapes: list[(N, C_in, d_b)] -> list[(N, C_out, d_b)].
    """

    def __init__(self, blocks: list[Block], in_channels: int, out_channels: int):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.randn(in_channels, out_channels)) for _ in blocks])
        self.norm = 1.0 / math.sqrt(in_channels)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        out: list[Tensor] = []
        for i, w in enumerate(self.weights):
            n, c, d = x[i].shape
            # one GEMM over all (atom, component) rows; (C_out, C_in) @ (N, C_in, d) would run as
            # N small products against N expanded copies of W
            rows = x[i].transpose(1, 2).reshape(n * d, c)
            out.append(torch.matmul(rows, w * self.norm).reshape(n, d, w.shape[1]).transpose(1, 2))
        return out


class _MatmulTransposedGradient(torch.autograd.Function):
    """x @ m whose input gradient is formed transposed, as (m @ gᵀ)ᵀ."""

    @staticmethod
    def forward(ctx, x: Tensor, m: Tensor) -> Tensor:
        ctx.save_for_backward(x, m)
        return torch.matmul(x, m)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Optional[Tensor], Optional[Tensor]]:
        x, m = ctx.saved_tensors
        grad_x = grad_m = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.matmul(m, g.t()).t()
        if ctx.needs_input_grad[1]:
            grad_m = torch.matmul(x.t(), g)
        return grad_x, grad_m


@torch.jit.unused
def _matmul_transposed_gradient(x: Tensor, m: Tensor) -> Tensor:
    return _MatmulTransposedGradient.apply(x, m)


def wide_matmul(x: Tensor, m: Tensor) -> Tensor:
    """x @ m for a matrix m much wider than tall (e.g. (64, 448), a radial head).

    Its input gradient g @ mᵀ is a long, thin product with a wide inner dimension, which MKL's
    float64 GEMM runs about 2x slower than the same product with its output transposed,
    (m @ gᵀ)ᵀ, on the AMD EPYC (AVX2) we measured (benchmarks/gemm_layouts.py prints both on yours);
    in float32 the plain form is the faster, so float32, other devices and TorchScript (the .pt
    export) take the plain product.  The backward, written in torch ops, stays differentiable
    (training's double backward).

    Shapes: x (R, K), m (K, M) -> (R, M).
    """
    if torch.jit.is_scripting() or x.dtype != torch.float64 or x.device.type != "cpu":
        return torch.matmul(x, m)
    return _matmul_transposed_gradient(x, m)


def species_matmul(x: Tensor, species: Tensor, weights: Tensor, grouped: bool = True) -> Tensor:
    """y_n = x_nᵀ · W[Z_n]: a different (K -> C_out) matrix per element.

    grouped (the default): one matmul per element over that element's nodes, the fewest FLOPs and
    no (N, S, K) one-hot expansion, so memory stays O(N·K).  Otherwise every element's matrix is
    applied to every node in one matmul and each node keeps its own: S times the FLOPs and an
    (N, d, S, C_out) temporary, but no data-dependent sizes.  The compiled export (.pt2) takes
    that form: AOTInductor (torch 2.13) compiled the grouped form's nonzero / index_copy chain to
    wrong numbers (0.1-1 eV per atom) in graphs with per-layer receiver counts.

    Shapes: x (N, K, d), species (N,) in [0, S), weights (S, K, C_out) -> (N, C_out, d).
    """
    if not grouped:
        n, k, d = x.shape
        s, c = weights.shape[0], weights.shape[2]
        every = torch.matmul(x.transpose(1, 2), weights.permute(1, 0, 2).reshape(k, s * c)).reshape(n, d, s, c)
        own = species.reshape(n, 1, 1, 1).expand(n, d, 1, c)
        return every.gather(2, own).squeeze(2).transpose(1, 2)
    out = torch.zeros(x.shape[0], weights.shape[2], x.shape[2], dtype=x.dtype, device=x.device)
    for s in range(weights.shape[0]):
        index = torch.nonzero(species == s).squeeze(1)  # may be empty (no branch: exportable)
        part = torch.matmul(weights[s].t(), x.index_select(0, index))
        out = out.index_copy(0, index, part)
    return out


class SpeciesLinear(nn.Module):
    """Element-dependent channel mixing (the residual "self-connection"), per block:
    y[b]_n = x[source_b]_nᵀ · W_b[Z_n] / sqrt(C_in · S).

    The 1/sqrt(S) (S elements) is the normalisation of a linear map from (channel ⊗ one-hot
    element) inputs, as MACE's self-connection has; without it the residual, and through it the
    initial energies and forces, grow with the number of elements.

    Shapes: list[(N, C_in, d)], species (N,) -> list[(N, C_out, d)], one per entry of ``source``
    (the index of the input block each output block maps from).
    """

    source: list[int]
    grouped_species: bool  # species_matmul's form (False in the compiled export)

    def __init__(self, source: list[int], num_species: int, in_channels: int, out_channels: int):
        super().__init__()
        self.source = source
        self.grouped_species = True
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(num_species, in_channels, out_channels)) for _ in source]
        )
        self.norm = 1.0 / math.sqrt(in_channels * num_species)

    def forward(self, x: list[Tensor], species: Tensor) -> list[Tensor]:
        out: list[Tensor] = []
        for i, w in enumerate(self.weights):
            out.append(species_matmul(x[self.source[i]], species, w * self.norm, self.grouped_species))
        return out
