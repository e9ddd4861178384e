"""The two edge-harmonic scales (ModelConfig.edge_harmonics) give the same functions:
"component" multiplies T_l(r̂) by f_l = sqrt((2l+1)/C_l), and a "paper" model whose radial weights
of every path with edge rank l are multiplied by f_l equals it."""

import pytest
import torch

from ictp_model.model.network import edge_harmonic_scale
from ictp_model.tensor.blocks import block_dim, block_paths
from ictp_model.tensor.constants import harmonic_constant

from .structures import evaluate, organic_molecule, small_model, triclinic_cell


@pytest.mark.parametrize("storage", ["compact", "dense"])
def test_squared_norm_is_2l_plus_1_for_component_and_c_l_for_paper(storage):
    vectors = torch.randn(200, 3, dtype=torch.float64)
    for convention in ("component", "paper"):
        harmonics, _ = small_model(storage=storage, edge_harmonics=convention).edge_features(vectors)
        start = 0
        for l in range(4):
            end = start + block_dim(l, storage)
            squared = (harmonics[:, start:end] ** 2).sum(-1)
            expected = 2 * l + 1 if convention == "component" else harmonic_constant(l)
            assert torch.allclose(squared, torch.full_like(squared, float(expected)), rtol=1e-12), (convention, l)
            start = end


def scale_radial_weights(network) -> None:
    """Multiply the radial weights of each path by f_l of its edge rank l (weights are (C, P))."""
    edge_blocks = [(l, 0) for l in range(network.edge_rank + 1)]
    in_blocks = [(0, 0)]
    for layer in network.layers:
        paths = block_paths(in_blocks, edge_blocks, network.edge_rank, network.config.odd)
        for out, block in zip(layer.conv.out_blocks, layer.conv.blocks):
            ranks = [edge_blocks[b][0] for _, b, o in paths if o == out]
            factors = torch.tensor([edge_harmonic_scale(l, "component") for l in ranks], dtype=torch.float64)
            with torch.no_grad():
                block.radial_head.mul_(factors.repeat(block.radial_head.shape[1] // len(ranks)))
        in_blocks = layer.out_blocks


@pytest.mark.parametrize("variant", ["full", "sym", "sym+lt"])
def test_component_equals_paper_with_rescaled_radial_weights(variant):
    component = small_model(variant=variant, odd=True, edge_harmonics="component")
    paper = small_model(variant=variant, odd=True, edge_harmonics="paper")
    before = evaluate(paper, organic_molecule())["forces"]
    scale_radial_weights(paper)
    for atoms, stress in ((organic_molecule(), False), (triclinic_cell(), True)):
        a, b = evaluate(component, atoms, stress=stress), evaluate(paper, atoms, stress=stress)
        for key in a:
            assert torch.allclose(a[key], b[key], rtol=1e-10, atol=1e-12), key
    assert not torch.allclose(before, evaluate(component, organic_molecule())["forces"], rtol=1e-3)
