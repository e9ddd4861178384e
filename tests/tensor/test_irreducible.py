import pytest
import torch

from ictp_model.tensor import detrace, stf_project, symmetrize, symmetry_error, trace_error

from .helpers import DTYPE, full_contract, random_stf


@pytest.mark.parametrize("l", range(0, 7))
def test_projection_is_idempotent_symmetric_and_traceless(l):
    x = torch.randn(4, *([3] * l), dtype=DTYPE)
    p = stf_project(x, l)
    assert symmetry_error(p, l) < 1e-12
    assert trace_error(p, l) < 1e-12
    assert torch.allclose(stf_project(p, l), p, atol=1e-12)


@pytest.mark.parametrize("l", range(0, 7))
def test_projection_is_orthogonal(l):
    x = torch.randn(4, *([3] * l), dtype=DTYPE)
    residual = x - stf_project(x, l)
    assert full_contract(residual, random_stf(l, 4), l).abs().max() < 1e-12


@pytest.mark.parametrize("l", range(0, 7))
def test_projector_has_rank_2l_plus_1(l):
    n = 3**l
    basis = torch.eye(n, dtype=DTYPE).reshape(n, *([3] * l))
    projector = stf_project(basis, l).reshape(n, n)
    assert torch.linalg.matrix_rank(projector, atol=1e-9).item() == 2 * l + 1


def test_symmetrize_matches_explicit_permutation_average():
    x = torch.randn(2, 3, 3, 3, dtype=DTYPE)
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    explicit = sum(x.permute(0, *(p + 1 for p in perm)) for perm in perms) / 6
    assert torch.allclose(symmetrize(x, 3), explicit, atol=1e-14)


def test_detrace_rank_two_by_hand():
    s = torch.randn(3, 3, dtype=DTYPE)
    s = s + s.t()
    expected = s - torch.trace(s) * torch.eye(3, dtype=DTYPE) / 3
    assert torch.allclose(detrace(s, 2), expected, atol=1e-14)


def test_pure_trace_is_removed_completely():
    eye = torch.eye(3, dtype=DTYPE)
    delta_delta = symmetrize(torch.einsum("ij,kl->ijkl", eye, eye), 4)
    assert detrace(delta_delta, 4).abs().max() < 1e-14
