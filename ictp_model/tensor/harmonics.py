"""Irreducible Cartesian tensors of unit vectors, T_l(r̂) (docs/math.md §1.1, the paper's Eq. (1))."""

import torch
from torch import Tensor

from .constants import harmonic_constant
from .irreducible import detrace


def unit_vectors(vectors: Tensor) -> Tensor:
    """r / |r| along the last axis; finite (zero) for the zero vector.

    Shapes: (..., 3) -> (..., 3).
    """
    norm = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    return vectors / norm.clamp_min(1e-30)


def outer_power(n: Tensor, l: int) -> Tensor:
    """n^{⊗l}: the l-fold outer product of vectors with themselves.

    Shapes: n (..., 3) -> (..., 3, ..., 3) with l trailing axes; l = 0 gives ones of shape (...).
    """
    out = torch.ones(n.shape[:-1], dtype=n.dtype, device=n.device)
    for _ in range(l):
        out = out.unsqueeze(-1) * n.reshape(list(n.shape[:-1]) + [1] * (out.dim() - n.dim() + 1) + [3])
    return out


def flat_outer_powers(n: Tensor, l_max: int) -> list[Tensor]:
    """[vec(n^{⊗0}), …, vec(n^{⊗l_max})], each built from the previous one; TorchScript-compatible.

    Shapes: n (E, 3) -> list of (E, 3^l).
    """
    powers: list[Tensor] = [torch.ones(n.shape[0], 1, dtype=n.dtype, device=n.device)]
    width = 1
    for _ in range(l_max):
        width = width * 3
        powers.append((powers[-1].unsqueeze(-1) * n.unsqueeze(1)).reshape(n.shape[0], width))
    return powers


def cartesian_harmonics(vectors: Tensor, l: int) -> Tensor:
    """T_l(r̂) = (2l-1)!!/l! · STF(r̂^{⊗l}) for any l >= 0; vectors are normalised inside.

    Properties: symmetric, traceless, T_l(n)·n^l = 1 and T_l(n)·s^l = P_l(n·s).

    Shapes: vectors (..., 3) -> (..., 3, ..., 3) with l trailing axes.
    """
    if l < 0:
        raise ValueError("rank l must be >= 0")
    n = unit_vectors(vectors)
    return harmonic_constant(l) * detrace(outer_power(n, l), l)
