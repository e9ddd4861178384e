"""The constant tables the model runs equal the public algebra, irreducible_product, for every
path it uses: the convolution's per-block tables (edge harmonics ⊗ neighbour features) and the
product basis' ν-fold products, in both storages, with odd paths."""

import math

import pytest
import torch

from ictp_model.tensor import irreducible_product, storage_embedding
from ictp_model.tensor.blocks import block_dim, block_paths

from ..model.structures import small_model

DTYPE = torch.float64


def stored_product(x, l1, y, l2, l3, storage):
    """storage((x ⊗ y)_l3) for stored x (d_l1,) and y (d_l2,), through the dense product."""
    e1, e2, e3 = (storage_embedding(l, storage) for l in (l1, l2, l3))
    dense_x = (e1 @ x).reshape([3] * l1) if l1 else (e1 @ x).reshape(())
    dense_y = (e2 @ y).reshape([3] * l2) if l2 else (e2 @ y).reshape(())
    return irreducible_product(dense_x, l1, dense_y, l2, l3).reshape(-1) @ e3


def offsets(blocks, storage):
    out = [0]
    for l, _ in blocks:
        out.append(out[-1] + block_dim(l, storage))
    return out


@pytest.fixture(scope="module", params=["compact", "dense"])
def model(request):
    return small_model(variant="full", odd=True, storage=request.param)


def test_convolution_tables_are_the_irreducible_products(model):
    storage, gen = model.config.storage, torch.Generator().manual_seed(1)
    edge_blocks = [(l, 0) for l in range(model.config.edge_rank + 1)]
    checked = 0
    for layer in model.layers:
        conv = layer.conv
        in_blocks = [b for b in _in_blocks(model, layer)]
        paths = block_paths(in_blocks, edge_blocks, model.config.edge_rank, model.config.odd)
        eoff = offsets(edge_blocks, storage)
        per_block = [[p for p in paths if p[2] == out] for out in conv.out_blocks]
        seen = [0 for _ in per_block]  # paths of each output block met so far, in group order
        for group in conv.groups:
            table = group.table.reshape(eoff[-1], group.d_a, group.width)
            start = 0
            for b, n_paths, d in zip(group.piece_block, group.piece_paths, group.piece_dim):
                for j in range(n_paths):
                    k = seen[b] + j
                    a, e, out = per_block[b][k]
                    assert a == group.a
                    l1, l2 = in_blocks[a][0], edge_blocks[e][0]
                    x = torch.randn(block_dim(l1, storage), dtype=DTYPE, generator=gen)
                    y = torch.randn(block_dim(l2, storage), dtype=DTYPE, generator=gen)
                    y_all = torch.zeros(eoff[-1], dtype=DTYPE)  # the other edge blocks must not enter
                    y_all[eoff[e] : eoff[e + 1]] = y
                    got = torch.einsum("i,j,jid->d", x, y_all, table[:, :, start + j * d : start + (j + 1) * d])
                    want = stored_product(x, l1, y, l2, out[0], storage) / math.sqrt(len(per_block[b]))
                    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
                    checked += 1
                seen[b] += n_paths
                start += n_paths * d
        assert seen == [len(block) for block in per_block]  # every path of every block, once
    assert checked > 20


def test_product_basis_products_are_the_irreducible_products(model):
    storage, gen = model.config.storage, torch.Generator().manual_seed(2)
    checked = 0
    for layer in model.layers:
        a_blocks = layer.conv.out_blocks
        a = [torch.randn(1, 1, block_dim(l, storage), dtype=DTYPE, generator=gen) for l, _ in a_blocks]
        p = [x.unsqueeze(2) for x in a]  # P_1 = A, one slot per block
        p_blocks = list(a_blocks)
        for prod in layer.product.products:
            out = prod(p, a)
            # the paths as the model enumerates them: its rank bound is the highest rank it produced
            bound = max(l for l, _ in prod.out_blocks)
            paths = block_paths(p_blocks, a_blocks, bound, model.config.odd, symmetric=False)
            for t, block in enumerate(prod.out_blocks):
                expected = []  # slot order: by path, then by the slots of the P block
                for pa, pb, o in paths:
                    if o == block:
                        for x in p[pa][0, 0]:
                            expected.append(
                                stored_product(x, p_blocks[pa][0], a[pb][0, 0], a_blocks[pb][0], o[0], storage)
                            )
                torch.testing.assert_close(out[t][0, 0], torch.stack(expected), rtol=1e-11, atol=1e-12)
                checked += len(expected)
            p, p_blocks = out, prod.out_blocks
    assert checked > 20


def _in_blocks(model, layer):
    return [(0, 0)] if layer is model.layers[0] else model.layers[0].out_blocks


@pytest.mark.parametrize("variant", ["full", "sym"])
def test_summed_highest_order_equals_the_weighted_sum_of_its_slots(variant):
    """The highest order enters B already summed over its slots (BlockProduct.weighted); this is
    the slot-by-slot evaluation (every product formed, then weighted) to 1e-12, for every layer."""
    gen = torch.Generator().manual_seed(3)
    for storage in ("compact", "dense"):
        model = small_model(variant=variant, odd=True, storage=storage)
        species = torch.tensor([0, 1, 1, 0, 1])
        for layer in model.layers:
            product = layer.product
            assert product.final_order == len(product.products) > 0
            a = [
                torch.randn(5, product.channels, block_dim(l, storage), dtype=DTYPE, generator=gen)
                for l, _ in layer.conv.out_blocks
            ]
            summed = product(a, species)
            product.final_order = -1  # form every order slot by slot
            try:
                reference = product(a, species)
            finally:
                product.final_order = len(product.products)
            assert len(summed) == len(reference) == len(product.out_blocks)
            for got, want in zip(summed, reference):
                torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["full", "sym", "sym+lt"])
def test_both_forms_of_the_product_basis_give_the_same_model(variant):
    """split_by_block (per block of A, float64's form) and one table over all of A (float32's)."""
    from ictp_model.nn.product_basis import SourceProduct

    from ..model.structures import evaluate, organic_molecule, triclinic_cell

    model = small_model(variant=variant, odd=True)
    sources = [m for m in model.modules() if isinstance(m, SourceProduct)]
    assert sources and all(m.split_by_block for m in sources)  # a float64 model
    for atoms, stress in ((organic_molecule(), False), (triclinic_cell(), True)):
        split = evaluate(model, atoms, stress=stress)
        for m in sources:
            m.split_by_block = False
        whole = evaluate(model, atoms, stress=stress)
        for m in sources:
            m.split_by_block = True
        for key in split:
            torch.testing.assert_close(whole[key], split[key], rtol=1e-10, atol=1e-12)
    assert not any(m.split_by_block for m in small_model(dtype="float32").modules() if isinstance(m, SourceProduct))
