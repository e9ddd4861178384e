"""The exported TorchScript module equals the eager model, including across explicit ghost images."""

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms

from ictp_export import export_model, load_exported
from ictp_export.ordering import order_by_level
from ictp_model.data.graph import graph_from_atoms
from ictp_model.data.neighbours import neighbour_list
from ictp_model.model import compute_properties
from ictp_model.model.potential import species_index

from ..model.structures import organic_molecule, small_model, triclinic_cell


@pytest.fixture(scope="module")
def model_and_export(tmp_path_factory):
    model = small_model(variant="full", odd=True)
    path = export_model(model, tmp_path_factory.mktemp("e") / "model-lammps.pt")
    return model, load_exported(path)


def test_attributes(model_and_export):
    model, exported = model_and_export
    assert exported.format_version == 2 and exported.cutoff == model.cutoff and exported.num_layers == 2
    assert list(exported.elements) == ["H", "C", "N", "O"] and exported.dtype == "float64"


def test_exported_equals_eager_on_a_molecule(model_and_export):
    model, exported = model_and_export
    atoms = organic_molecule()
    graph = graph_from_atoms(atoms, model.cutoff)
    zeros = torch.zeros(graph.num_edges, 3, dtype=torch.float64)
    species = species_index(model.z_to_index, graph.numbers)
    out = exported(graph.positions, species, graph.edge_index, zeros, [len(atoms)] * 2, True)
    ref = compute_properties(model, graph, forces=True, stress=True)
    assert torch.allclose(out["energy"], ref["energy"][0], atol=1e-12)
    assert torch.allclose(out["node_energy"], ref["node_energy"], atol=1e-12)
    assert torch.allclose(out["forces"], ref["forces"], atol=1e-12)
    assert torch.allclose(out["virial"], ref["virial"][0], atol=1e-12)
    assert torch.allclose(out["atom_virial"].sum(0), out["virial"], atol=1e-12)


def test_periodic_cell_with_images_mapped_to_their_owners(model_and_export):
    """What the pair style does on one rank: every ghost is an image of a local atom and is
    replaced by it, the edge keeping the image offset as a shift."""
    model, exported = model_and_export
    atoms = triclinic_cell()
    graph = graph_from_atoms(atoms, model.cutoff)
    shifts = graph.shifts @ graph.cell[0]
    species = species_index(model.z_to_index, graph.numbers)
    out = exported(graph.positions, species, graph.edge_index, shifts, [len(atoms)] * 2, True)
    ref = compute_properties(model, graph, forces=True, stress=True)
    assert torch.allclose(out["energy"], ref["energy"][0], atol=1e-12)
    assert torch.allclose(out["forces"], ref["forces"], atol=1e-12)
    assert torch.allclose(out["virial"], ref["virial"][0], atol=1e-12)


def test_periodic_cell_through_explicit_ghost_images(model_and_export):
    """What the pair style does: local atoms first, then image atoms up to layers × cutoff away,
    no periodic shifts, atoms ordered by level and each layer updating only the atoms it must;
    the local energies and the folded-back forces equal the periodic result."""
    model, exported = model_and_export
    atoms = triclinic_cell()
    n = len(atoms)
    cell = atoms.cell[:]
    reach = model.config.layers * model.cutoff
    images = [atoms.positions]
    for shift in itertools.product(range(-4, 5), repeat=3):
        if shift != (0, 0, 0):
            images.append(atoms.positions + np.asarray(shift) @ cell)
    cluster = np.concatenate(images)
    # keep images within reach of the cell's atoms (all local atoms come first)
    dist = np.linalg.norm(cluster[:, None, :] - atoms.positions[None, :, :], axis=-1).min(1)
    keep = np.nonzero(dist < reach + 1e-9)[0]
    positions = cluster[keep]
    owner = keep % n
    i, j, _ = neighbour_list(positions, np.zeros((3, 3)), np.array([False] * 3), model.cutoff)
    order, edges, receivers = order_by_level(n, i, j, len(positions), model.config.layers)
    assert receivers[-1] == n and receivers[0] < len(order) < len(positions)  # fewer atoms and edges
    positions, owner = positions[order], owner[order]
    species = species_index(model.z_to_index, torch.as_tensor(atoms.numbers[owner]))
    out = exported(
        torch.as_tensor(positions),
        species,
        torch.as_tensor(edges),
        torch.zeros(edges.shape[1], 3, dtype=torch.float64),
        receivers,
        True,
    )
    graph = graph_from_atoms(atoms, model.cutoff)
    ref = compute_properties(model, graph, forces=True, stress=True)
    folded = torch.zeros(n, 3, dtype=torch.float64).index_add(0, torch.as_tensor(owner), out["forces"])
    assert torch.allclose(out["energy"], ref["energy"][0], atol=1e-10)
    assert torch.allclose(out["node_energy"], ref["node_energy"], atol=1e-10)
    assert torch.allclose(folded, ref["forces"], atol=1e-10)
    assert torch.allclose(out["virial"], ref["virial"][0], atol=1e-10)


def test_export_from_a_saved_model_file(tmp_path):
    from ictp_model import save_model

    model = small_model()
    save_model(model, tmp_path / "model.pt")
    path = export_model(tmp_path / "model.pt", tmp_path / "out" / "model-lammps.pt")
    assert path.is_file() and not list((tmp_path / "out").glob(".*.tmp"))
    atoms = Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]])
    graph = graph_from_atoms(atoms, model.cutoff)
    out = load_exported(path)(
        graph.positions,
        species_index(model.z_to_index, graph.numbers),
        graph.edge_index,
        torch.zeros(graph.num_edges, 3, dtype=torch.float64),
        [2, 2],
        False,
    )
    assert "virial" not in out
    assert torch.allclose(out["energy"], compute_properties(model, graph)["energy"][0], atol=1e-12)
