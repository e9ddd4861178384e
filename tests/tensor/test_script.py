"""The functions the model calls must compile with torch.jit.script and agree with eager mode."""

import torch

from ictp_model import tensor as t

from .helpers import DTYPE, random_stf


def test_scripted_harmonics_and_products_equal_eager():
    r = torch.randn(5, 3, dtype=DTYPE)
    harmonics = torch.jit.script(t.cartesian_harmonics)
    for l in range(5):
        assert torch.equal(harmonics(r, l), t.cartesian_harmonics(r, l))
    powers = torch.jit.script(t.flat_outer_powers)
    for a, b in zip(powers(t.unit_vectors(r), 3), t.flat_outer_powers(t.unit_vectors(r), 3)):
        assert torch.equal(a, b)
    product = torch.jit.script(t.product_unnormalized)
    for l1, l2, l3 in [(2, 2, 2), (2, 1, 2), (3, 3, 3)]:
        x, y = random_stf(l1, 4), random_stf(l2, 4)
        assert torch.equal(product(x, l1, y, l2, l3), t.product_unnormalized(x, l1, y, l2, l3))


def test_scripted_algebra_helpers_equal_eager():
    x, y = random_stf(3, 4), random_stf(2, 4)
    q = t.random_o3(reflection=True, generator=torch.Generator().manual_seed(0))
    calls = [
        (t.symmetrize, (x, 3)),
        (t.detrace, (x, 3)),
        (t.stf_project, (x, 3)),
        (t.contract, (x, 3, y, 2, 1)),
        (t.outer_power, (torch.randn(4, 3, dtype=DTYPE), 3)),
        (t.unit_vectors, (torch.randn(4, 3, dtype=DTYPE),)),
        (t.rotate, (x, 3, q, True)),
    ]
    for fn, args in calls:
        assert torch.equal(torch.jit.script(fn)(*args), fn(*args)), fn.__name__
