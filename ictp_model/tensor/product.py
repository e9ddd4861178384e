"""The irreducible Cartesian tensor product (docs/math.md §1.2–1.3, the paper's Eqs. (2)–(3)).

Even path (l1 + l2 - l3 = 2k):
    (x ⊗ y)_l3 = C_{l1 l2 l3} · STF(Sym_Σ(x ·(k) y))
Odd path (l1 + l2 - l3 = 2k + 1):
    (x ⊗ y)_l3 = D_{l1 l2 l3} · STF(ε : (x ·(k) y))
where x ·(k) y contracts the last k axes of x with the first k axes of y, Sym_Σ is the sum over
distinct index permutations, and ε : (…) contracts the last free index of x and the first free
index of y with the Levi-Civita symbol ε_{iab}, creating one new index (a generalised cross
product).  The odd result is a pseudo-tensor.

Odd normalisation (our choice; the paper's is not published): D_{l1 l2 l3} > 0 makes the bilinear
map a partial isometry in orthonormal STF bases, like an orthonormal Clebsch–Gordan block:
Σ_{m1 m2} K[m1, m2, m3] K[m1, m2, m3'] = δ_{m3 m3'}, i.e. ‖K‖_F² = 2 l3 + 1 for the compact
coupling tensor K of :mod:`.coupling` (by Schur's lemma the path is unique up to this scale).
D² is rational, e.g. D²_{111} = 1/2, D²_{1ll} = l/(l+1), D²_{ll1} = 3l/((l+1)(2l+1)).
"""

import math
from functools import cache

import torch
from torch import Tensor

from .basis import stf_basis
from .constants import even_product_constant, pow3, symmetrization_multiplicity
from .irreducible import stf_project


def check_path(l1: int, l2: int, l3: int) -> None:
    """Raise ValueError unless |l1 - l2| <= l3 <= l1 + l2 and all ranks are >= 0."""
    if l1 < 0 or l2 < 0 or l3 < 0:
        raise ValueError(f"ranks must be >= 0, got ({l1}, {l2}, {l3})")
    if l3 < abs(l1 - l2) or l3 > l1 + l2:
        raise ValueError(f"no product path {l1} x {l2} -> {l3}: need |l1-l2| <= l3 <= l1+l2")


def is_odd_path(l1: int, l2: int, l3: int) -> bool:
    """True for the Levi-Civita (parity-flipping) paths, l1 + l2 - l3 odd."""
    return (l1 + l2 - l3) % 2 == 1


def contract(x: Tensor, l1: int, y: Tensor, l2: int, k: int) -> Tensor:
    """x ·(k) y: contract the last k axes of x with the first k Cartesian axes of y.

    Leading (non-Cartesian) axes broadcast.  The result keeps x's l1-k free axes first, then
    y's l2-k free axes.

    Shapes: x (..., 3^[l1]), y (..., 3^[l2]) -> (..., 3^[l1+l2-2k]).
    """
    lead_x: list[int] = list(x.shape[: x.dim() - l1])
    lead_y: list[int] = list(y.shape[: y.dim() - l2])
    xm = x.reshape(lead_x + [pow3(l1 - k), pow3(k)])
    ym = y.reshape(lead_y + [pow3(k), pow3(l2 - k)])
    out = torch.matmul(xm, ym)
    lead: list[int] = list(out.shape[:-2])
    return out.reshape(lead + [3] * (l1 + l2 - 2 * k))


def levi_civita(dtype: torch.dtype, device: torch.device) -> Tensor:
    """ε_{ijk}, shape (3, 3, 3)."""
    eps = torch.zeros(3, 3, 3, dtype=dtype, device=device)
    eps[0, 1, 2] = 1.0
    eps[1, 2, 0] = 1.0
    eps[2, 0, 1] = 1.0
    eps[0, 2, 1] = -1.0
    eps[2, 1, 0] = -1.0
    eps[1, 0, 2] = -1.0
    return eps


def cross_contract(a: Tensor, rank: int, position: int) -> Tensor:
    """Replace the two adjacent axes (position, position + 1) of a rank-`rank` tensor by one new
    trailing axis i via ε_{iab} a_{…a b…}.

    Shapes: (..., 3^[rank]) -> (..., 3^[rank - 1]).
    """
    d = a.dim()
    first = d - rank + position
    moved = a.movedim(first, -1).movedim(first, -1)  # (..., a, b) at the end
    lead: list[int] = list(moved.shape[:-2])
    eps = levi_civita(a.dtype, a.device).reshape(3, 9)
    return torch.matmul(moved.reshape(lead + [9]), eps.t())


def product_unnormalized(x: Tensor, l1: int, y: Tensor, l2: int, l3: int) -> Tensor:
    """STF(Sym(x ·(k) y)) for even paths, STF(ε : (x ·(k) y)) for odd paths; no constant.

    Shapes: x (..., 3^[l1]), y (..., 3^[l2]) -> (..., 3^[l3]), leading axes broadcast.
    """
    if is_odd_path(l1, l2, l3):
        k = (l1 + l2 - l3 - 1) // 2
        a = contract(x, l1, y, l2, k)
        return stf_project(cross_contract(a, l3 + 1, l1 - k - 1), l3)
    k = (l1 + l2 - l3) // 2
    return stf_project(contract(x, l1, y, l2, k), l3)


@cache
def odd_product_constant(l1: int, l2: int, l3: int) -> float:
    """D_{l1 l2 l3} for odd paths (see the module docstring), computed once in float64."""
    check_path(l1, l2, l3)
    if not is_odd_path(l1, l2, l3):
        raise ValueError(f"{l1} x {l2} -> {l3} is an even path")
    x = stf_basis(l1).t().reshape([2 * l1 + 1, 1] + [3] * l1)
    y = stf_basis(l2).t().reshape([1, 2 * l2 + 1] + [3] * l2)
    z = product_unnormalized(x, l1, y, l2, l3).reshape(2 * l1 + 1, 2 * l2 + 1, pow3(l3))
    return math.sqrt((2 * l3 + 1) / float((z**2).sum()))


def path_constant(l1: int, l2: int, l3: int) -> float:
    """The factor applied to :func:`product_unnormalized`: C_{l1l2l3}·N for even paths (N turns
    the permutation average into the sum over distinct permutations), D_{l1l2l3} for odd."""
    if is_odd_path(l1, l2, l3):
        return odd_product_constant(l1, l2, l3)
    return even_product_constant(l1, l2, l3) * symmetrization_multiplicity(l1, l2, l3)


def irreducible_product(x: Tensor, l1: int, y: Tensor, l2: int, l3: int) -> Tensor:
    """The irreducible Cartesian product (x ⊗ y)_l3 of a rank-l1 and a rank-l2 tensor.

    x and y are assumed symmetric and traceless (irreducible).  Even or odd path by the parity of
    l1 + l2 - l3; odd paths return pseudo-tensors.  Reference implementation on dense storage.

    Shapes: x (..., 3^[l1]), y (..., 3^[l2]) -> (..., 3^[l3]), leading axes broadcast.
    """
    check_path(l1, l2, l3)
    return path_constant(l1, l2, l3) * product_unnormalized(x, l1, y, l2, l3)
