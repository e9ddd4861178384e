"""Product paths as precomputed coupling tensors acting on stored tensors (compact or dense).

K[m1, m2, m3] = <E_l3[:, m3], (E_l1[:, m1] ⊗ E_l2[:, m2])_l3> with the storage embeddings E_l of
:mod:`.basis` (the orthonormal STF bases B_l in compact storage, the identity in dense storage),
so that storage((x ⊗ y)_l3) = einsum('...a,...b,abc->...c', storage(x), storage(y), K).  These
are the tables the model runs (:mod:`ictp_model.nn`).
"""

from functools import cache

import torch
from torch import Tensor

from .basis import storage_embedding
from .product import check_path, irreducible_product


@cache
def _coupling_cached(l1: int, l2: int, l3: int, storage: str) -> Tensor:
    # the dense reference product on the storage basis vectors, read back in the output storage
    # (the product is STF, so the orthonormal basis reads it back exactly)
    e1, e2, e3 = storage_embedding(l1, storage), storage_embedding(l2, storage), storage_embedding(l3, storage)
    x = e1.t().reshape([e1.shape[1], 1] + [3] * l1)
    y = e2.t().reshape([1, e2.shape[1]] + [3] * l2)
    z = irreducible_product(x, l1, y, l2, l3).reshape(e1.shape[1], e2.shape[1], 3**l3)
    return z @ e3


def coupling_tensor(
    l1: int,
    l2: int,
    l3: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    storage: str = "compact",
) -> Tensor:
    """The product path l1 ⊗ l2 -> l3 acting on stored tensors, shape (d_l1, d_l2, d_l3) with
    d_l = 2l+1 (compact) or 3^l (dense)."""
    check_path(l1, l2, l3)
    return _coupling_cached(l1, l2, l3, storage).to(dtype=dtype, device=device)


def compact_product(x: Tensor, l1: int, y: Tensor, l2: int, l3: int) -> Tensor:
    """(x ⊗ y)_l3 on compact storage; equals to_compact(irreducible_product(dense x, dense y)).

    The larger input is contracted with the coupling tensor first (one matmul), the smaller one
    then by a batched vector-matrix product; this never materialises the outer product.

    Shapes: x (..., 2l1+1), y (..., 2l2+1) -> (..., 2l3+1), leading axes broadcast.
    """
    k = coupling_tensor(l1, l2, l3, x.dtype, x.device)
    if x.shape[-1] < y.shape[-1]:
        x, y, k = y, x, k.transpose(0, 1)
    d1, d2, d3 = k.shape
    lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
    x = x.expand(*lead, d1).reshape(-1, d1)
    y = y.expand(*lead, d2).reshape(-1, 1, d2)
    partial = (x @ k.reshape(d1, d2 * d3)).reshape(-1, d2, d3)
    return torch.bmm(y, partial).reshape(*lead, d3)
