"""Feature layout of the network: lists of (rank, parity) blocks in dense or compact storage.

A node feature is a list of tensors, one per block (l, p), each of shape (N, C, d_l) with the
channels before the Cartesian components.  p = 0 is a natural-parity tensor (parity (-1)^l, what
T_l(r̂) and even products of such tensors are), p = 1 a pseudo-tensor (made by odd, Levi-Civita
paths).  d_l = 2l+1 in compact storage (coordinates in the orthonormal STF basis of
:mod:`ictp_model.tensor.basis`) and 3^l in dense storage (the full Cartesian array, flattened).

Both storages use the same parameters: only the constant tables built here differ.
"""

from functools import cache

import torch
from torch import Tensor

from ictp_model.tensor import harmonic_constant, irreducible_product, is_odd_path, stf_basis

Block = tuple[int, int]  # (rank l, parity p): p = 0 natural, 1 pseudo


def block_dim(l: int, storage: str) -> int:
    """Number of stored components of a rank-l block."""
    return 2 * l + 1 if storage == "compact" else 3**l


def _embedding(l: int, storage: str) -> Tensor:
    """E_l: storage coordinates -> dense coordinates, (3^l, d_l)."""
    return stf_basis(l) if storage == "compact" else torch.eye(3**l, dtype=torch.float64)


@cache
def storage_coupling(l1: int, l2: int, l3: int, storage: str) -> Tensor:
    """The product path l1 ⊗ l2 -> l3 in storage coordinates, (d_l1, d_l2, d_l3), float64.

    Built by the dense reference product on the storage basis vectors, then read back in the
    output storage (the product is STF, so the orthonormal basis reads it back exactly).
    """
    e1, e2, e3 = _embedding(l1, storage), _embedding(l2, storage), _embedding(l3, storage)
    x = e1.t().reshape([e1.shape[1], 1] + [3] * l1)
    y = e2.t().reshape([1, e2.shape[1]] + [3] * l2)
    z = irreducible_product(x, l1, y, l2, l3).reshape(e1.shape[1], e2.shape[1], 3**l3)
    return z @ e3  # e3 orthonormal columns (compact) or identity (dense)


@cache
def harmonics_table(l: int, storage: str) -> Tensor:
    """H_l with storage(T_l(n)) = vec(n^{⊗l}) @ H_l, (3^l, d_l), float64.

    T_l(n) = C_l · STF(n^{⊗l}) and STF = B_l B_lᵀ on symmetric tensors, hence
    H_l = C_l · B_l B_lᵀ E_l.
    """
    b = stf_basis(l)
    return harmonic_constant(l) * (b @ (b.t() @ _embedding(l, storage)))


def product_parity(p1: int, p2: int, l1: int, l2: int, l3: int) -> int:
    """Parity label of the output block of path (l1, p1) ⊗ (l2, p2) -> l3."""
    return (p1 + p2 + int(is_odd_path(l1, l2, l3))) % 2


def block_paths(
    in1: list[Block], in2: list[Block], out_max_rank: int, odd: bool, symmetric: bool = False
) -> list[tuple[int, int, Block]]:
    """Every path (index into in1, index into in2, output block) with output rank <= out_max_rank.

    symmetric: in1 and in2 are the same tensor list (x ⊗ x); of the equal (a, b)/(b, a) pairs only
    a >= b is kept, and the odd paths of a block with itself (which vanish) are dropped.
    """
    paths: list[tuple[int, int, Block]] = []
    for a, (l1, p1) in enumerate(in1):
        for b, (l2, p2) in enumerate(in2):
            if symmetric and a < b:
                continue
            for l3 in range(abs(l1 - l2), min(l1 + l2, out_max_rank) + 1):
                if is_odd_path(l1, l2, l3) and (not odd or (symmetric and a == b)):
                    continue
                paths.append((a, b, (l3, product_parity(p1, p2, l1, l2, l3))))
    return paths


def sorted_blocks(blocks) -> list[Block]:
    """Unique blocks ordered by rank, natural parity first."""
    return sorted(set(blocks))
