"""The feature layout of the network: lists of (rank, parity) blocks in dense or compact storage.

A node feature is a list of tensors, one per block (l, p), each of shape (N, C, d_l) with the
channels before the Cartesian components.  p = 0 is a natural-parity tensor (parity (-1)^l, what
T_l(r̂) and even products of such tensors are), p = 1 a pseudo-tensor (made by odd, Levi-Civita
paths).  d_l = 2l+1 in compact storage (coordinates in the orthonormal STF basis of :mod:`.basis`)
and 3^l in dense storage (the full Cartesian array, flattened).  Both storages use the same
parameters; only the constant tables (:func:`.coupling.coupling_tensor`,
:func:`.basis.harmonics_matrix`) differ.
"""

from .basis import storage_dim
from .product import is_odd_path

Block = tuple[int, int]  # (rank l, parity p): p = 0 natural, 1 pseudo


def block_dim(l: int, storage: str) -> int:
    """Number of stored components of a rank-l block."""
    return storage_dim(l, storage)


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
