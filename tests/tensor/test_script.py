"""The functions the model calls must compile with torch.jit.script and agree with eager mode."""

import torch

from ictp_model import tensor as t

from .helpers import DTYPE, random_stf


def test_scripted_harmonics_and_products_equal_eager():
    r = torch.randn(5, 3, dtype=DTYPE)
    harmonics = torch.jit.script(t.cartesian_harmonics)
    for l in range(5):
        assert torch.equal(harmonics(r, l), t.cartesian_harmonics(r, l))
    compact = torch.jit.script(t.compact_harmonics)
    assert torch.equal(compact(r, 3, t.harmonics_matrix(3)), t.compact_harmonics(r, 3, t.harmonics_matrix(3)))
    product = torch.jit.script(t.product_unnormalized)
    for l1, l2, l3 in [(2, 2, 2), (2, 1, 2), (3, 3, 3)]:
        x, y = random_stf(l1, 4), random_stf(l2, 4)
        assert torch.equal(product(x, l1, y, l2, l3), t.product_unnormalized(x, l1, y, l2, l3))


def test_algebra_helpers_script():
    for fn in (t.symmetrize, t.detrace, t.stf_project, t.contract, t.rotate, t.outer_power, t.unit_vectors):
        torch.jit.script(fn)
