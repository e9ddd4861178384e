"""Product paths as precomputed coupling tensors acting on compact (2l+1) storage.

K[m1, m2, m3] = <B_l3[:, m3], (B_l1[:, m1] ⊗ B_l2[:, m2])_l3> with the orthonormal bases B_l of
:mod:`.basis`, so that to_compact((x ⊗ y)_l3) = einsum('...a,...b,abc->...c', x_c, y_c, K).
"""

from functools import cache

import torch
from torch import Tensor

from .basis import stf_basis
from .product import check_path, irreducible_product


@cache
def _coupling_cached(l1: int, l2: int, l3: int) -> Tensor:
    b1, b2, b3 = stf_basis(l1), stf_basis(l2), stf_basis(l3)
    x = b1.t().reshape(2 * l1 + 1, 1, *([3] * l1))
    y = b2.t().reshape(1, 2 * l2 + 1, *([3] * l2))
    z = irreducible_product(x, l1, y, l2, l3)
    return z.reshape(2 * l1 + 1, 2 * l2 + 1, 3**l3) @ b3


def coupling_tensor(
    l1: int,
    l2: int,
    l3: int,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> Tensor:
    """The product path l1 ⊗ l2 -> l3 acting on compact tensors, shape (2l1+1, 2l2+1, 2l3+1)."""
    check_path(l1, l2, l3)
    return _coupling_cached(l1, l2, l3).to(dtype=dtype, device=device)


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
