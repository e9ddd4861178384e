import pytest
import torch

from ictp_model.tensor import (
    cartesian_harmonics,
    even_product_constant,
    irreducible_product,
    is_odd_path,
    product_paths,
    random_o3,
    rotate,
    symmetry_error,
    trace_error,
)

from .helpers import DTYPE, random_stf

ALL_PATHS = product_paths(4, 4, 4, odd=True)
EVEN_PATHS = [p for p in ALL_PATHS if not is_odd_path(*p)]
ODD_PATHS = [p for p in ALL_PATHS if is_odd_path(*p)]


def test_path_enumeration_covers_every_allowed_triple():
    triples = [(a, b, c) for a in range(5) for b in range(5) for c in range(5) if abs(a - b) <= c <= a + b]
    assert sorted(ALL_PATHS) == sorted(triples)
    # parity: a path is even (no Levi-Civita) exactly when l1 + l2 + l3 is even
    assert sorted(EVEN_PATHS) == sorted(t for t in triples if sum(t) % 2 == 0)
    assert sorted(ODD_PATHS) == sorted(t for t in triples if sum(t) % 2 == 1)


def test_path_counts_match_the_reference_model():
    # math.md §1.6: convolution node rank <= Lh times edge rank <= 3, output <= 3
    assert [len(product_paths(lh, 3, 3)) for lh in (0, 1, 2)] == [4, 10, 17]
    # product basis A ⊗ A with A up to rank 3, per output rank
    sym = product_paths(3, 3, 3, symmetric=True)
    full = product_paths(3, 3, 3)
    assert [sum(p[2] == l for p in sym) for l in range(4)] == [4, 3, 5, 3]
    assert [sum(p[2] == l for p in full) for l in range(4)] == [4, 6, 7, 6]


def test_even_constants_match_known_values():
    known = {(1, 1, 0): 1, (1, 1, 2): 3 / 4, (2, 1, 1): 1, (2, 1, 3): 5 / 9, (2, 2, 0): 2 / 3}
    known.update({(2, 2, 2): 1, (2, 2, 4): 35 / 108, (3, 2, 1): 2 / 3, (3, 3, 2): 3 / 4})
    for path, value in known.items():
        assert even_product_constant(*path) == pytest.approx(value, rel=1e-14)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_product_is_symmetric_and_traceless(path):
    l1, l2, l3 = path
    z = irreducible_product(random_stf(l1, 5), l1, random_stf(l2, 5), l2, l3)
    assert z.shape == (5,) + (3,) * l3
    assert symmetry_error(z, l3) < 1e-12
    assert trace_error(z, l3) < 1e-12


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("reflection", [False, True])
def test_product_is_o3_equivariant_with_the_right_parity(path, reflection):
    l1, l2, l3 = path
    q = random_o3(reflection=reflection)
    x, y = random_stf(l1, 3), random_stf(l2, 3)
    lhs = irreducible_product(rotate(x, l1, q), l1, rotate(y, l2, q), l2, l3)
    rhs = rotate(irreducible_product(x, l1, y, l2, l3), l3, q, pseudo=is_odd_path(l1, l2, l3))
    assert torch.allclose(lhs, rhs, atol=1e-12)


@pytest.mark.parametrize("path", EVEN_PATHS)
def test_even_product_of_same_direction_harmonics_is_a_harmonic(path):
    l1, l2, l3 = path
    n = torch.randn(7, 3, dtype=DTYPE)
    z = irreducible_product(cartesian_harmonics(n, l1), l1, cartesian_harmonics(n, l2), l2, l3)
    assert torch.allclose(z, cartesian_harmonics(n, l3), atol=1e-11)


@pytest.mark.parametrize("path", ODD_PATHS)
def test_odd_product_vanishes_for_one_direction_and_not_for_two(path):
    l1, l2, l3 = path
    n, s = torch.randn(7, 3, dtype=DTYPE), torch.randn(7, 3, dtype=DTYPE)
    same = irreducible_product(cartesian_harmonics(n, l1), l1, cartesian_harmonics(n, l2), l2, l3)
    other = irreducible_product(cartesian_harmonics(n, l1), l1, cartesian_harmonics(s, l2), l2, l3)
    assert same.abs().max() < 1e-12
    assert other.flatten(1).norm(dim=1).min() > 1e-6


def test_odd_rank_one_product_is_a_scaled_cross_product():
    a, b = torch.randn(3, dtype=DTYPE), torch.randn(3, dtype=DTYPE)
    z = irreducible_product(a, 1, b, 1, 1)
    assert torch.allclose(z, torch.linalg.cross(a, b) / 2**0.5, atol=1e-14)


@pytest.mark.parametrize("path", ALL_PATHS)
def test_product_is_bilinear(path):
    l1, l2, l3 = path
    x1, x2, y1, y2 = random_stf(l1, 2), random_stf(l1, 2), random_stf(l2, 2), random_stf(l2, 2)
    a, b = 0.7, -1.9

    def prod(x, y):
        return irreducible_product(x, l1, y, l2, l3)

    assert torch.allclose(prod(a * x1 + b * x2, y1), a * prod(x1, y1) + b * prod(x2, y1), atol=1e-12)
    assert torch.allclose(prod(x1, a * y1 + b * y2), a * prod(x1, y1) + b * prod(x1, y2), atol=1e-12)


@pytest.mark.parametrize("path", [(2, 1, 3), (2, 2, 2), (3, 2, 2), (2, 3, 4)])
def test_batched_product_equals_one_by_one_and_broadcasts(path):
    l1, l2, l3 = path
    x, y = random_stf(l1, 4, 1), random_stf(l2, 1, 5)
    batched = irreducible_product(x, l1, y, l2, l3)
    assert batched.shape == (4, 5) + (3,) * l3
    for i in range(4):
        for j in range(5):
            single = irreducible_product(x[i, 0], l1, y[0, j], l2, l3)
            assert torch.allclose(batched[i, j], single, atol=1e-14)


@pytest.mark.parametrize("path", [(1, 1, 2), (2, 1, 1), (2, 2, 3), (3, 3, 2), (2, 3, 3)])
def test_product_passes_gradcheck(path):
    l1, l2, l3 = path
    x = random_stf(l1, 2).requires_grad_()
    y = random_stf(l2, 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: irreducible_product(a, l1, b, l2, l3), (x, y))


@pytest.mark.parametrize("path", [(1, 2, 4), (3, 1, 1), (-1, 1, 1)])
def test_forbidden_paths_are_rejected(path):
    with pytest.raises(ValueError):
        l1, l2, l3 = path
        irreducible_product(torch.zeros([3] * max(l1, 0)), l1, torch.zeros([3] * l2), l2, l3)
