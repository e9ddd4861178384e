"""O(3) actions on Cartesian tensors and random orthogonal matrices (for tests and augmentation)."""

import torch
from torch import Tensor

from .basis import stf_basis
from .constants import pow3


def rotate(x: Tensor, l: int, matrix: Tensor, pseudo: bool = False) -> Tensor:
    """Apply an O(3) matrix Q to every one of the last l axes: x'_{i..} = Q_{ia} … x_{a..}.

    Pseudo-tensors pick up an extra factor det(Q).  TorchScript-compatible.

    Shapes: x (..., 3^[l]), matrix (3, 3) -> (..., 3^[l]).
    """
    out = x
    d = x.dim()
    for axis in range(d - l, d):
        out = torch.matmul(out.movedim(axis, -1), matrix.t()).movedim(-1, axis)
    if pseudo:
        out = out * torch.linalg.det(matrix)
    return out


def compact_rotation(matrix: Tensor, l: int, pseudo: bool = False) -> Tensor:
    """The representation D_l(Q) of an O(3) matrix on compact rank-l tensors:
    to_compact(rotate(x)) = to_compact(x) @ D_l(Q)ᵀ.

    Shapes: matrix (3, 3) -> (2l+1, 2l+1).
    """
    basis = stf_basis(l, matrix.dtype, matrix.device)  # (3^l, 2l+1)
    dense = basis.t().reshape([2 * l + 1] + [3] * l)
    rotated = rotate(dense, l, matrix, pseudo).reshape(2 * l + 1, pow3(l))
    return (rotated @ basis).t()


def random_o3(
    reflection: bool | None = None,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """A Haar-random orthogonal 3×3 matrix.

    Args:
        reflection: True gives det = -1 (a rotation times the inversion), False det = +1, None
            either with probability 1/2.

    Returns:
        (3, 3) tensor.
    """
    a = torch.randn(3, 3, dtype=torch.float64, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))  # Haar measure on O(3)
    if reflection is None:
        reflection = bool(torch.rand((), generator=generator) < 0.5)
    if (torch.linalg.det(q) < 0) != reflection:
        q = -q
    return q.to(dtype)
