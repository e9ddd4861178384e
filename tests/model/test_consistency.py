"""Batching, locality, storage, precision and periodic-image consistency."""

import numpy as np
import pytest
import torch
from ase import Atoms

from ictp_model.data.graph import collate, graph_from_atoms
from ictp_model.model import compute_properties
from ictp_model.model.potential import edge_vectors, species_index

from .structures import evaluate, evaluate_many, organic_molecule, slab, small_model, triclinic_cell


def test_batched_equals_one_by_one():
    model = small_model(variant="sym+lt")
    structures = [organic_molecule(), triclinic_cell(), slab(), Atoms("O")]
    batched, graph = evaluate_many(model, structures, stress=True)
    start = 0
    for g, atoms in enumerate(structures):
        single = evaluate(model, atoms, stress=True)
        n = len(atoms)
        assert torch.allclose(batched["energy"][g], single["energy"][0], atol=1e-12)
        assert torch.allclose(batched["forces"][start : start + n], single["forces"], atol=1e-12)
        assert torch.allclose(batched["stress"][g], single["stress"][0], atol=1e-12)
        start += n


def test_far_apart_molecules_add_up():
    model = small_model()
    a, b = organic_molecule(), organic_molecule()
    b.rotate(70, "y")
    b.positions += [100.0, 0.0, 0.0]
    both = evaluate(model, a + b)["energy"][0]
    assert torch.allclose(both, evaluate(model, a)["energy"][0] + evaluate(model, b)["energy"][0], atol=1e-10)


def test_no_gradient_flows_between_structures_of_a_batch():
    model = small_model()
    graph = collate([graph_from_atoms(s, model.cutoff) for s in (organic_molecule(), triclinic_cell())])
    positions = graph.positions.clone().requires_grad_(True)
    vectors = edge_vectors(positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
    node_energy = model(species_index(model.z_to_index, graph.numbers), graph.edge_index, vectors)
    first = node_energy[graph.batch == 0].sum()
    (grad,) = torch.autograd.grad(first, positions)
    assert grad[graph.batch == 1].abs().max() == 0.0
    assert grad[graph.batch == 0].abs().max() > 0.0


@pytest.mark.parametrize("variant,odd", [("full", True), ("sym", False), ("sym+lt", True)])
def test_dense_state_dict_loads_into_compact_and_agrees(variant, odd):
    dense = small_model(variant=variant, odd=odd, storage="dense")
    compact = small_model(seed=99, variant=variant, odd=odd, storage="compact")
    compact.load_state_dict(dense.state_dict())
    for atoms in (organic_molecule(), triclinic_cell()):
        d, c = evaluate(dense, atoms, stress=True), evaluate(compact, atoms, stress=True)
        assert torch.allclose(d["energy"], c["energy"], atol=1e-10, rtol=0)
        assert torch.allclose(d["forces"], c["forces"], atol=1e-10, rtol=0)
        assert torch.allclose(d["stress"], c["stress"], atol=1e-10, rtol=0)


def test_float32_agrees_with_float64():
    model64 = small_model()
    model32 = small_model(dtype="float32")
    model32.load_state_dict(model64.state_dict())
    assert model32.embedding.dtype == torch.float32
    assert torch.get_default_dtype() == torch.float32  # the global default is never touched
    for atoms in (organic_molecule(), triclinic_cell()):
        e64, e32 = evaluate(model64, atoms), evaluate(model32, atoms)
        assert e32["energy"].dtype == torch.float32
        assert torch.allclose(e32["energy"].double(), e64["energy"], rtol=1e-5, atol=1e-5)
        scale = e64["forces"].abs().max()
        assert (e32["forces"].double() - e64["forces"]).abs().max() < 1e-4 * scale


def test_wrapped_and_unwrapped_positions_agree():
    model = small_model()
    atoms = triclinic_cell()
    unwrapped = atoms.copy()
    unwrapped.positions += (
        np.array([[1, 0, 0], [0, -2, 1], [0, 0, 0], [3, 1, -1], [-1, -1, -1], [0, 2, 0]]) @ atoms.cell[:]
    )
    ref, moved = evaluate(model, atoms, stress=True), evaluate(model, unwrapped, stress=True)
    for key in ("energy", "forces", "stress"):
        assert torch.allclose(ref[key], moved[key], atol=1e-10)


def test_supercell_gives_the_same_energy_per_atom():
    model = small_model()
    atoms = triclinic_cell()
    big = atoms.repeat((2, 2, 2))
    ref, sup = evaluate(model, atoms, stress=True), evaluate(model, big, stress=True)
    assert torch.allclose(sup["energy"] / len(big), ref["energy"] / len(atoms), atol=1e-10)
    assert torch.allclose(sup["forces"], ref["forces"].repeat(8, 1), atol=1e-10)
    assert torch.allclose(sup["stress"], ref["stress"], atol=1e-10)


def test_unknown_element_is_a_clear_error():
    model = small_model()
    with pytest.raises(ValueError, match=r"\['Fe'\] are not known to the model"):
        compute_properties(model, graph_from_atoms(Atoms("FeH", positions=[[0, 0, 0], [1, 0, 0]]), 3.0))
