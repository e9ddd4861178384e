"""Shared helpers for the tensor-algebra tests."""

import torch

from ictp_model.tensor import stf_project

DTYPE = torch.float64


def random_stf(l: int, *lead: int) -> torch.Tensor:
    """A random symmetric traceless tensor, shape (*lead, 3, ..., 3)."""
    return stf_project(torch.randn(*lead, *([3] * l), dtype=DTYPE), l)


def legendre(l: int, x: torch.Tensor) -> torch.Tensor:
    """P_l(x) by Bonnet's recurrence."""
    p0, p1 = torch.ones_like(x), x
    if l == 0:
        return p0
    for n in range(1, l):
        p0, p1 = p1, ((2 * n + 1) * x * p1 - n * p0) / (n + 1)
    return p1


def full_contract(a: torch.Tensor, b: torch.Tensor, l: int) -> torch.Tensor:
    """Σ a_{i..} b_{i..} over the last l axes."""
    return (a * b).reshape(*a.shape[: a.dim() - l], -1).sum(-1)
