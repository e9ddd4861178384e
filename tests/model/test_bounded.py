"""The bounded-memory evaluation equals the plain path (float64, 1e-10) for every variant."""

import numpy as np
import pytest
import torch

from ictp_model import ICTPCalculator
from ictp_model.data.graph import collate, graph_from_atoms
from ictp_model.model import compute_properties
from ictp_model.model.bounded import BoundedEvaluation, _chunks
from ictp_model.model.potential import edge_vectors, species_index

from .structures import VARIANTS, organic_molecule, small_model, triclinic_cell

TIGHT = dict(rtol=1e-10, atol=1e-12)


def inputs(model, atoms, sort: bool = False):
    graph = graph_from_atoms(atoms, model.cutoff)
    species = species_index(model.z_to_index, graph.numbers)
    vectors = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
    edge_index = graph.edge_index
    if sort:
        order = torch.argsort(edge_index[0], stable=True)
        edge_index, vectors = edge_index[:, order], vectors[order]
    return species, edge_index, vectors


@pytest.fixture(scope="module", params=VARIANTS)
def model(request):
    network = small_model(variant=request.param, odd=True)
    for p in network.parameters():
        p.requires_grad_(False)
    return network


@pytest.mark.parametrize("max_edges", [1, 9, 60, 400])
def test_chunks_equal_the_plain_path(model, max_edges):
    """Unsorted edges (as the neighbour list gives them), chunks from one atom to most of the cell."""
    species, edge_index, vectors = inputs(model, triclinic_cell().repeat((2, 2, 1)))
    evaluation = BoundedEvaluation(model)
    assert max_edges < edge_index.shape[1]  # really chunked
    plain_energy, plain_g = evaluation(species, edge_index, vectors, None, edge_index.shape[1])
    energy, g = evaluation(species, edge_index, vectors, None, max_edges)
    np.testing.assert_allclose(energy.numpy(), plain_energy.numpy(), **TIGHT)
    np.testing.assert_allclose(g.numpy(), plain_g.numpy(), **TIGHT)


def test_layers_with_fewer_receivers_as_lammps_orders_them(model):
    species, edge_index, vectors = inputs(model, triclinic_cell().repeat((2, 1, 1)), sort=True)
    n = species.shape[0]
    receivers = [n - 3, n // 2]
    # layer 0 updates the first n - 3 atoms, layer 1 the first n // 2, which hear only updated atoms
    centre, sender = edge_index
    keep = (centre < receivers[0]) & ((centre >= receivers[1]) | (sender < receivers[0]))
    edge_index, vectors = edge_index[:, keep], vectors[keep]
    num_edges = edge_index.shape[1]
    evaluation = BoundedEvaluation(model)
    plain_energy, plain_g = evaluation(species, edge_index, vectors, receivers, num_edges)
    energy, g = evaluation(species, edge_index, vectors, receivers, 11)
    assert energy.shape == (n // 2,)
    np.testing.assert_allclose(energy.numpy(), plain_energy.numpy(), **TIGHT)
    np.testing.assert_allclose(g.numpy(), plain_g.numpy(), **TIGHT)
    scripted = torch.jit.script(evaluation)
    s_energy, s_g = scripted(species, edge_index, vectors, receivers, 11)
    np.testing.assert_allclose(s_energy.numpy(), plain_energy.numpy(), **TIGHT)
    np.testing.assert_allclose(s_g.numpy(), plain_g.numpy(), **TIGHT)


def test_compute_properties_in_bounded_memory(model):
    """Energies, per-atom energies, forces, virials and stress of a batch (a molecule and a cell)."""
    graph = collate(
        [graph_from_atoms(organic_molecule(), model.cutoff), graph_from_atoms(triclinic_cell(), model.cutoff)]
    )
    plain = compute_properties(model, graph, forces=True, stress=True)
    bounded = compute_properties(model, graph, forces=True, stress=True, memory_mb=1e-4)
    assert BoundedEvaluation(model).chunk_edges(1e-4) < graph.num_edges / 4
    for key in ["energy", "node_energy", "forces", "virial", "stress"]:
        np.testing.assert_allclose(bounded[key].detach().numpy(), plain[key].detach().numpy(), **TIGHT, err_msg=key)


def test_calculator_in_bounded_memory(model):
    atoms = triclinic_cell().repeat((2, 1, 1))
    atoms.calc = ICTPCalculator(model)
    reference = {k: atoms.calc.get_property(k, atoms) for k in ["energy", "forces", "energies", "stress"]}
    atoms.calc = ICTPCalculator(model, memory_mb=1e-4)
    for key, value in reference.items():
        np.testing.assert_allclose(atoms.calc.get_property(key, atoms), value, **TIGHT, err_msg=key)


def test_chunks_cover_the_receivers_within_the_budget():
    offsets = torch.tensor([0, 3, 3, 10, 12, 30, 31])  # receiver 4 alone has 18 edges
    chunks = _chunks(offsets, 8)
    assert chunks[0][0] == 0 and chunks[-1][1] == 6 and chunks[-1][3] == 31
    for (r0, r1, e0, e1), following in zip(chunks, chunks[1:] + [None]):
        assert (e0, e1) == (int(offsets[r0]), int(offsets[r1])) and r1 > r0
        assert e1 - e0 <= 8 or r1 == r0 + 1
        if following is not None:
            assert following[0] == r1
