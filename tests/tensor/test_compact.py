import pytest
import torch

from ictp_model.tensor import (
    cartesian_harmonics,
    compact_product,
    compact_rotation,
    coupling_tensor,
    flat_outer_powers,
    harmonics_matrix,
    irreducible_product,
    is_odd_path,
    product_paths,
    random_o3,
    rotate,
    stf_basis,
    stf_project,
    to_compact,
    to_dense,
)

from .helpers import DTYPE, random_stf

ALL_PATHS = product_paths(4, 4, 4, odd=True)


@pytest.mark.parametrize("l", range(0, 7))
def test_basis_is_orthonormal_and_irreducible(l):
    b = stf_basis(l)
    assert b.shape == (3**l, 2 * l + 1)
    assert torch.allclose(b.t() @ b, torch.eye(2 * l + 1, dtype=DTYPE), atol=1e-12)
    columns = b.t().reshape(2 * l + 1, *([3] * l))
    assert torch.allclose(stf_project(columns, l), columns, atol=1e-12)


@pytest.mark.parametrize("l", range(0, 7))
def test_round_trip_preserves_stf_tensors_and_norms(l):
    x = random_stf(l, 6)
    c = to_compact(x, l)
    assert c.shape == (6, 2 * l + 1)
    assert torch.allclose(to_dense(c, l), x, atol=1e-12)
    assert torch.allclose(c.norm(dim=-1), x.reshape(6, -1).norm(dim=-1), atol=1e-12)


@pytest.mark.parametrize("storage", ["compact", "dense"])
@pytest.mark.parametrize("l", range(0, 7))
def test_the_models_harmonics_table_gives_stored_harmonics(l, storage):
    """What the network computes for its edges: vec(r̂^{⊗l}) @ harmonics_matrix(l, storage)."""
    r = torch.randn(8, 3, dtype=DTYPE)
    powers = flat_outer_powers(r / r.norm(dim=-1, keepdim=True), l)
    assert [p.shape[1] for p in powers] == [3**k for k in range(l + 1)]
    stored = powers[l] @ harmonics_matrix(l, storage=storage)
    dense = cartesian_harmonics(r, l)
    expected = to_compact(dense, l) if storage == "compact" else dense.reshape(8, -1)
    assert torch.allclose(stored, expected, atol=1e-12)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_compact_product_equals_dense_product(path):
    l1, l2, l3 = path
    x, y = random_stf(l1, 5), random_stf(l2, 5)
    dense = to_compact(irreducible_product(x, l1, y, l2, l3), l3)
    compact = compact_product(to_compact(x, l1), l1, to_compact(y, l2), l2, l3)
    assert torch.allclose(compact, dense, atol=1e-12)


@pytest.mark.parametrize("path", [p for p in ALL_PATHS if is_odd_path(*p)])
def test_odd_couplings_are_partial_isometries(path):
    l1, l2, l3 = path
    k = coupling_tensor(l1, l2, l3).reshape(-1, 2 * l3 + 1)
    assert torch.allclose(k.t() @ k, torch.eye(2 * l3 + 1, dtype=DTYPE), atol=1e-12)


@pytest.mark.parametrize("l", range(0, 5))
@pytest.mark.parametrize("reflection", [False, True])
def test_compact_rotation_represents_o3(l, reflection):
    q1, q2 = random_o3(reflection=reflection), random_o3()
    x = random_stf(l, 3)
    d1 = compact_rotation(q1, l)
    assert torch.allclose(to_compact(rotate(x, l, q1), l), to_compact(x, l) @ d1.t(), atol=1e-12)
    assert torch.allclose(d1 @ d1.t(), torch.eye(2 * l + 1, dtype=DTYPE), atol=1e-12)
    assert torch.allclose(compact_rotation(q1 @ q2, l), d1 @ compact_rotation(q2, l), atol=1e-12)
