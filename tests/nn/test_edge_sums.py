"""The convolution's gather and sum over edges (gather / scatter_add, the forms inductor compiles
without atomic adds) equal index_select / index_add, derivatives included, in float64."""

import torch

from ictp_model.nn.convolution import gather_rows, scatter_rows


def test_gather_and_scatter_equal_index_select_and_index_add_with_their_derivatives():
    gen = torch.Generator().manual_seed(0)
    num_rows, num_edges = 7, 40
    index = torch.randint(0, num_rows - 2, (num_edges,), generator=gen)  # unsorted; the last rows get nothing
    x = torch.randn(num_rows, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    m = torch.randn(num_edges, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)

    gathered, summed = gather_rows(x, index), scatter_rows(m, index, num_rows)
    assert torch.equal(gathered, x.index_select(0, index))
    reference = torch.zeros(num_rows, 5, 3, dtype=torch.float64).index_add(0, index, m)
    assert summed.shape == (num_rows, 5, 3)
    assert torch.allclose(summed, reference, rtol=0, atol=1e-14)
    assert torch.equal(summed[-2:], torch.zeros(2, 5, 3, dtype=torch.float64))

    weights_e = torch.randn(num_edges, 5, 3, generator=gen, dtype=torch.float64)
    weights_n = torch.randn(num_rows, 5, 3, generator=gen, dtype=torch.float64)
    (dx,) = torch.autograd.grad((gathered * weights_e).sum(), [x])
    (dm,) = torch.autograd.grad((summed * weights_n).sum(), [m])
    assert torch.allclose(dx, torch.zeros_like(x).index_add(0, index, weights_e), rtol=0, atol=1e-14)
    assert torch.equal(dm, weights_n.index_select(0, index))


def test_no_edges_give_zero_sums():
    m = torch.zeros(0, 4, 2, dtype=torch.float64)
    out = scatter_rows(m, torch.zeros(0, dtype=torch.int64), 3)
    assert torch.equal(out, torch.zeros(3, 4, 2, dtype=torch.float64))
    assert gather_rows(torch.ones(3, 4, 2), torch.zeros(0, dtype=torch.int64)).shape == (0, 4, 2)
