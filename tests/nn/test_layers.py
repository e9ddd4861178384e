"""Each interaction layer on its own: O(3)-equivariant block by block (pseudo-tensors pick up
det Q), and at initialisation its outputs have unit-order variance, layer after layer."""

import pytest
import torch

from ictp_model.data.graph import graph_from_atoms
from ictp_model.model.potential import edge_vectors, species_index
from ictp_model.tensor import compact_rotation, random_o3

from ..model.structures import VARIANTS, organic_molecule, small_model, triclinic_cell


def layer_outputs(model, atoms, rotation=None):
    """Every layer's output blocks for ``atoms`` (optionally with all edge vectors rotated)."""
    graph = graph_from_atoms(atoms, model.cutoff)
    species = species_index(model.z_to_index, graph.numbers)
    vectors = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
    if rotation is not None:
        vectors = vectors @ rotation.t()
    harmonics, radial = model.edge_features(vectors)
    h = [(model.embedding * model.embedding_norm).index_select(0, species).unsqueeze(-1)]
    outputs = []
    for layer in model.layers:
        h = layer(h, species, harmonics, radial, graph.edge_index, species.shape[0])
        outputs.append((layer.out_blocks, h))
    return outputs


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_layer_is_equivariant_block_by_block(variant):
    model = small_model(variant=variant, odd=True)
    q = random_o3(reflection=True, generator=torch.Generator().manual_seed(3))
    atoms = organic_molecule()
    plain, rotated = layer_outputs(model, atoms), layer_outputs(model, atoms, q)
    checked = 0
    for (blocks, h), (_, h_rot) in zip(plain, rotated):
        for (l, parity), x, x_rot in zip(blocks, h, h_rot):
            d = compact_rotation(q, l, pseudo=parity == 1)
            torch.testing.assert_close(x_rot, x @ d.t(), rtol=1e-9, atol=1e-11)
            checked += 1
    assert checked >= 4 and any(p == 1 for blocks, _ in plain for _, p in blocks)


@pytest.mark.parametrize("variant", VARIANTS)
def test_layer_outputs_at_initialisation_have_the_scale_of_their_normalisation(variant):
    """At initialisation a first layer's scalars are dominated by its residual,
    W[Z]ᵀ·e_Z / sqrt(C·S) of an embedding e_Z with variance 1/S: mean square 1/S² (MACE's first
    layer has the same); a missing 1/sqrt(fan-in) on that path would change it by ≥ S = 4, and
    every other block stays finite and below the scalars' scale.  (Measured here: scalars 0.05-0.07,
    rank 1 0.003-0.008, rank 2 ~0.001, last layer 0.01-0.02; MACE 0.3.16 at the same settings and
    structure: 0.086, 0.0003, 0.0007 and 0.027.)"""
    torch.manual_seed(0)
    model = small_model(variant=variant, channels=16, avg_num_neighbors=19.3)
    num_species = len(model.config.elements)
    atoms = triclinic_cell().repeat((2, 2, 2))  # 19.3 neighbours per atom within the cutoff
    outputs = layer_outputs(model, atoms)
    blocks, h = outputs[0]
    scalars = float(h[blocks.index((0, 0))].detach().pow(2).mean())
    assert 0.5 / num_species**2 < scalars < 2.0 / num_species**2
    for t, (blocks, h) in enumerate(outputs):
        for block, x in zip(blocks, h):
            mean_square = float(x.detach().pow(2).mean())
            assert 1e-5 < mean_square < 1.0, f"layer {t} block {block}: mean square {mean_square:.3g}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_ungrouped_species_matrices_give_the_same_model(variant):
    """species_matmul's ungrouped form (every element's matrix on every node, then each node's
    own; what the compiled export runs) equals the grouped one: residuals, and the channel-coupled
    product weights of sym+lt, to round-off, in every layer."""
    from ictp_model.nn.linear import species_matmul

    gen = torch.Generator().manual_seed(0)
    x, weights = torch.randn(9, 5, 3, generator=gen, dtype=torch.float64), torch.randn(4, 5, 6, dtype=torch.float64)
    species = torch.tensor([2, 0, 3, 3, 1, 0, 2, 2, 3])  # every element, in no order
    torch.testing.assert_close(species_matmul(x, species, weights, False), species_matmul(x, species, weights))
    model = small_model(variant=variant, odd=True)
    ungrouped = [m for m in model.modules() if hasattr(m, "grouped_species")]
    assert len(ungrouped) >= 2 * len(model.layers)  # every residual and every product basis
    for atoms in (organic_molecule(), triclinic_cell()):
        want = layer_outputs(model, atoms)
        for m in ungrouped:
            m.grouped_species = False
        got = layer_outputs(model, atoms)
        for m in ungrouped:
            m.grouped_species = True
        for (_, h_got), (_, h_want) in zip(got, want):
            for a, b in zip(h_got, h_want):
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_wide_matmul_and_its_first_and_second_derivatives_equal_matmul(dtype):
    """wide_matmul forms its input gradient transposed in float64; values, both gradients and the
    double backward of training (a force loss differentiates the gradient again) are matmul's."""
    from ictp_model.nn.linear import wide_matmul

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(37, 8, dtype=dtype, generator=generator, requires_grad=True)
    m = torch.randn(8, 21, dtype=dtype, generator=generator, requires_grad=True)
    probe = torch.randn(37, 21, dtype=dtype, generator=generator)
    results = []
    for product in (wide_matmul, torch.matmul):
        y = product(x, m)
        gx, gm = torch.autograd.grad((y * probe).sum(), (x, m), create_graph=True)
        second = torch.autograd.grad((gx.sin().sum() + gm.cos().sum()), (x, m))  # nonzero second derivatives
        results.append((y, gx, gm, *second))
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    for ours, reference in zip(*results):
        assert torch.allclose(ours, reference, rtol=tolerance, atol=tolerance)
    if dtype == torch.float64:  # the transposed gradient is what ran
        assert "MatmulTransposedGradient" in type(wide_matmul(x, m).grad_fn).__name__
        assert torch.autograd.gradgradcheck(wide_matmul, (x.detach().requires_grad_(), m.detach().requires_grad_()))
