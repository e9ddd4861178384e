"""Compact (2l+1) storage of irreducible Cartesian tensors: an orthonormal STF basis.

A rank-l STF tensor has 2l+1 independent components.  :func:`stf_basis` builds, from the
Cartesian definitions alone, an orthonormal basis B_l (3^l × (2l+1)) of the STF subspace; then

    to_compact(x) = vec(x) @ B_l,     to_dense(c) = c @ B_lᵀ,

norms are preserved, and every product path becomes a small coupling tensor
K[m1, m2, m3] = <B_l3[:, m3], (B_l1[:, m1] ⊗ B_l2[:, m2])_l3>, so that
to_compact((x ⊗ y)_l3) = einsum('...a,...b,abc->...c', to_compact(x), to_compact(y), K).

The basis: project the 2l+1 symmetric monomial tensors x^a y^b z^c with c ∈ {0, 1} (a harmonic
polynomial is fixed by its terms of degree <= 1 in z) onto the STF subspace and orthonormalise
them by Gram–Schmidt in that fixed order, in float64.  Tables are cached per rank/path on the
CPU in float64; callers cast them once (the model stores them as buffers).
"""

from functools import cache

import torch
from torch import Tensor

from .constants import harmonic_constant, pow3
from .irreducible import stf_project, symmetrize


def compact_dim(l: int) -> int:
    """Number of independent components of a rank-l STF tensor, 2l + 1."""
    return 2 * l + 1


def dense_dim(l: int) -> int:
    """Number of entries of a dense rank-l Cartesian tensor, 3^l."""
    return pow3(l)


def _monomial_tensor(a: int, b: int, c: int) -> Tensor:
    """Sym(e_x^{⊗a} ⊗ e_y^{⊗b} ⊗ e_z^{⊗c}) in float64, shape (3,)*(a+b+c)."""
    l = a + b + c
    t = torch.ones((), dtype=torch.float64)
    for axis in [0] * a + [1] * b + [2] * c:
        e = torch.zeros(3, dtype=torch.float64)
        e[axis] = 1.0
        t = t.unsqueeze(-1) * e
    return symmetrize(t, l)


@cache
def _stf_basis_cached(l: int) -> Tensor:
    candidates = [(a, l - a, 0) for a in range(l, -1, -1)]
    candidates += [(a, l - 1 - a, 1) for a in range(l - 1, -1, -1)]
    columns: list[Tensor] = []
    for a, b, c in candidates:
        v = stf_project(_monomial_tensor(a, b, c), l).reshape(-1)
        for _ in range(2):  # Gram–Schmidt twice for round-off
            for q in columns:
                v = v - (q @ v) * q
        norm = torch.linalg.vector_norm(v)
        if norm < 1e-8:
            raise RuntimeError(f"degenerate STF basis candidate {(a, b, c)} for l={l}")
        columns.append(v / norm)
    return torch.stack(columns, dim=1)


def stf_basis(l: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
    """Orthonormal basis of the rank-l STF subspace, shape (3^l, 2l+1)."""
    if l < 0:
        raise ValueError("rank l must be >= 0")
    return _stf_basis_cached(l).to(dtype=dtype, device=device)


def to_compact(x: Tensor, l: int) -> Tensor:
    """Components of an STF tensor in the basis of :func:`stf_basis`.

    Shapes: (..., 3^[l]) -> (..., 2l+1).
    """
    lead = x.shape[: x.dim() - l]
    return x.reshape(*lead, pow3(l)) @ stf_basis(l, x.dtype, x.device)


def to_dense(c: Tensor, l: int) -> Tensor:
    """Inverse of :func:`to_compact` on the STF subspace.

    Shapes: (..., 2l+1) -> (..., 3^[l]).
    """
    lead = c.shape[:-1]
    return (c @ stf_basis(l, c.dtype, c.device).t()).reshape(*lead, *([3] * l))


def storage_dim(l: int, storage: str) -> int:
    """Stored components of a rank-l tensor: 2l+1 in compact storage, 3^l in dense storage."""
    if storage not in ("compact", "dense"):
        raise ValueError(f"storage must be 'compact' or 'dense', got {storage!r}")
    return compact_dim(l) if storage == "compact" else dense_dim(l)


def storage_embedding(l: int, storage: str) -> Tensor:
    """E_l: storage coordinates -> dense coordinates, (3^l, d_l), float64: B_l or the identity."""
    return stf_basis(l) if storage == "compact" else torch.eye(dense_dim(l), dtype=torch.float64)


def harmonics_matrix(
    l: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu", storage: str = "compact"
) -> Tensor:
    """M_l = C_l · B_l B_lᵀ E_l, so that storage(T_l(n)) = vec(n^{⊗l}) @ M_l: the STF projection
    of the symmetric n^{⊗l} (B_l B_lᵀ), read in the storage (E_l).  In compact storage this is
    C_l · B_l.

    Shape: (3^l, d_l).
    """
    b = stf_basis(l)
    table = harmonic_constant(l) * (b @ (b.t() @ storage_embedding(l, storage)))
    return table.to(dtype=dtype, device=device)
