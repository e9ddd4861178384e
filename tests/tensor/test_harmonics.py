import pytest
import torch

from ictp_model.tensor import cartesian_harmonics, outer_power, random_o3, rotate, symmetry_error, trace_error

from .helpers import DTYPE, full_contract, legendre

RANKS = range(0, 7)


@pytest.mark.parametrize("l", RANKS)
def test_harmonics_are_symmetric_and_traceless(l):
    t = cartesian_harmonics(torch.randn(10, 3, dtype=DTYPE), l)
    assert t.shape == (10,) + (3,) * l
    assert symmetry_error(t, l) < 1e-12
    assert trace_error(t, l) < 1e-12


@pytest.mark.parametrize("l", RANKS)
def test_harmonics_span_exactly_2l_plus_1_dimensions(l):
    t = cartesian_harmonics(torch.randn(4 * l + 8, 3, dtype=DTYPE), l).reshape(4 * l + 8, -1)
    assert torch.linalg.matrix_rank(t, atol=1e-9).item() == 2 * l + 1


@pytest.mark.parametrize("l", RANKS)
def test_harmonics_contracted_with_own_direction_give_one(l):
    r = torch.randn(10, 3, dtype=DTYPE) * 3.7  # not unit: normalised inside
    n = r / r.norm(dim=-1, keepdim=True)
    value = full_contract(cartesian_harmonics(r, l), outer_power(n, l), l)
    assert torch.allclose(value, torch.ones(10, dtype=DTYPE), atol=1e-12)


@pytest.mark.parametrize("l", RANKS)
def test_harmonics_contracted_with_other_direction_give_legendre(l):
    n = torch.nn.functional.normalize(torch.randn(10, 3, dtype=DTYPE), dim=-1)
    s = torch.nn.functional.normalize(torch.randn(10, 3, dtype=DTYPE), dim=-1)
    value = full_contract(cartesian_harmonics(n, l), outer_power(s, l), l)
    assert torch.allclose(value, legendre(l, (n * s).sum(-1)), atol=1e-12)


def test_low_ranks_match_closed_forms():
    n = torch.nn.functional.normalize(torch.randn(3, dtype=DTYPE), dim=0)
    eye = torch.eye(3, dtype=DTYPE)
    assert torch.allclose(cartesian_harmonics(n, 0), torch.ones((), dtype=DTYPE))
    assert torch.allclose(cartesian_harmonics(n, 1), n)
    assert torch.allclose(cartesian_harmonics(n, 2), 1.5 * (torch.outer(n, n) - eye / 3))
    t3 = torch.einsum("i,j,k->ijk", n, n, n) - 0.2 * (
        torch.einsum("i,jk->ijk", n, eye) + torch.einsum("j,ik->ijk", n, eye) + torch.einsum("k,ij->ijk", n, eye)
    )
    assert torch.allclose(cartesian_harmonics(n, 3), 2.5 * t3)


@pytest.mark.parametrize("l", RANKS)
@pytest.mark.parametrize("reflection", [False, True])
def test_harmonics_are_o3_equivariant(l, reflection):
    q = random_o3(reflection=reflection)
    r = torch.randn(6, 3, dtype=DTYPE)
    lhs = cartesian_harmonics(r @ q.t(), l)
    rhs = rotate(cartesian_harmonics(r, l), l, q)
    assert torch.allclose(lhs, rhs, atol=1e-12)


@pytest.mark.parametrize("l", [1, 2, 3, 4])
def test_harmonics_gradients_are_finite_for_short_and_long_vectors(l):
    r = torch.randn(5, 3, dtype=DTYPE) * torch.tensor([1e-8, 1e-3, 1.0, 10.0, 1e3], dtype=DTYPE)[:, None]
    r.requires_grad_(True)
    (grad,) = torch.autograd.grad(cartesian_harmonics(r, l).pow(2).sum(), r)
    assert torch.isfinite(grad).all()
    assert torch.autograd.gradcheck(lambda v: cartesian_harmonics(v, l), (r[2:].detach().requires_grad_(),))


def test_negative_rank_is_rejected():
    with pytest.raises(ValueError):
        cartesian_harmonics(torch.randn(3, dtype=DTYPE), -1)
