"""Symmetrisation and trace removal: the projection onto symmetric traceless (STF) tensors.

Layout: a rank-l Cartesian tensor is a tensor whose *last* l axes have size 3; any leading axes
are batch/channel axes and are left alone. All functions are TorchScript-compatible.
"""

import torch
from torch import Tensor

from .constants import double_factorial, num_placements, pow3


def _orbit_ids(l: int, device: torch.device) -> Tensor:
    """For each of the 3^l flat multi-indices, the id of its orbit under index permutations.

    Two multi-indices are in one orbit iff they hold the same number of x's, y's and z's, so
    the id is n_x * (l + 1) + n_y.  Shape: (3^l,), int64.
    """
    flat = torch.arange(pow3(l), device=device)
    n_x = torch.zeros_like(flat)
    n_y = torch.zeros_like(flat)
    for p in range(l):
        digit = torch.div(flat, pow3(p), rounding_mode="floor") % 3
        n_x = n_x + (digit == 0).long()
        n_y = n_y + (digit == 1).long()
    return n_x * (l + 1) + n_y


def symmetrize(x: Tensor, l: int) -> Tensor:
    """Average of x over all l! permutations of its last l axes.

    Averaging over permutations equals averaging each entry over its orbit, which costs one
    scatter and one gather instead of l! transposes.

    Shapes: x (..., 3, ..., 3) with l trailing axes -> same shape.
    """
    if l < 2:
        return x
    ids = _orbit_ids(l, x.device)
    n_orbits = (l + 1) * (l + 1)
    lead: list[int] = list(x.shape[: x.dim() - l])
    flat = x.reshape(lead + [pow3(l)])
    sums = torch.zeros(lead + [n_orbits], dtype=x.dtype, device=x.device)
    sums = sums.index_add(-1, ids, flat)
    counts = torch.bincount(ids, minlength=n_orbits).clamp(min=1).to(x.dtype)
    return (sums / counts).index_select(-1, ids).reshape(x.shape)


def trace_last_pair(x: Tensor) -> Tensor:
    """Contract the last two axes of x with each other: (..., 3, 3) -> (...)."""
    return x.diagonal(dim1=-2, dim2=-1).sum(-1)


def append_delta(x: Tensor) -> Tensor:
    """Outer product with the identity on two new trailing axes: (...) -> (..., 3, 3)."""
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    return x.unsqueeze(-1).unsqueeze(-1) * eye


def detrace(x: Tensor, l: int) -> Tensor:
    """Remove all traces of a *symmetric* rank-l tensor (the detracer, docs/math.md §1.1).

    STF(S) = Σ_m (-1)^m (2l-2m-1)!!/(2l-1)!! · {δ^m ⊗ Tr^m S}, where {…} is the sum over the
    l!/(2^m m! (l-2m)!) distinct placements, written here as that count times the average over
    permutations.  For symmetric S this is the orthogonal projection onto the STF subspace.

    Shapes: x (..., 3, ..., 3) with l trailing axes, symmetric in them -> same shape.
    """
    if l < 2:
        return x
    out = x
    traced = x
    for m in range(1, l // 2 + 1):
        traced = trace_last_pair(traced)  # rank l - 2m
        term = traced
        for _ in range(m):
            term = append_delta(term)
        coef = (-1.0) ** m * double_factorial(2 * l - 2 * m - 1) / double_factorial(2 * l - 1)
        out = out + coef * num_placements(l, m) * symmetrize(term, l)
    return out


def stf_project(x: Tensor, l: int) -> Tensor:
    """Orthogonal projection of any rank-l tensor onto the symmetric traceless subspace.

    Shapes: x (..., 3, ..., 3) with l trailing axes -> same shape.
    """
    return detrace(symmetrize(x, l), l)


def symmetry_error(x: Tensor, l: int) -> Tensor:
    """Largest |x - Sym(x)| entry; zero for a symmetric tensor."""
    return (x - symmetrize(x, l)).abs().max()


def trace_error(x: Tensor, l: int) -> Tensor:
    """Largest |entry| of the traces over every index pair (i, j) of the last l axes."""
    worst = torch.zeros((), dtype=x.dtype, device=x.device)
    d = x.dim()
    for i in range(l):
        for j in range(i + 1, l):
            tr = x.diagonal(dim1=d - l + i, dim2=d - l + j).sum(-1)
            worst = torch.maximum(worst, tr.abs().max())
    return worst
