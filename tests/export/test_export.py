"""The exported TorchScript module equals the eager model (explicit ghost images: tests/lammps/test_graph_builder.py)."""

import pytest
import torch
from ase import Atoms

from ictp_export import export_model, load_exported
from ictp_model.data.graph import graph_from_atoms
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


def test_float32_export_keeps_edge_vectors_exact_far_from_the_origin(tmp_path):
    """Edge vectors are differences of float64 positions, cast only then: a float32 model gives the
    same forces for a cell translated by 1e5 Å (float32 positions there resolve only ~0.008 Å)."""
    model = small_model(dtype="float32")
    exported = load_exported(export_model(model, tmp_path / "model-lammps.pt"))
    atoms = triclinic_cell()
    graph = graph_from_atoms(atoms, model.cutoff)
    shifts = (graph.shifts @ graph.cell[0]).double()
    species = species_index(model.z_to_index, graph.numbers)
    positions = graph.positions.double()
    near = exported(positions, species, graph.edge_index, shifts, [len(atoms)] * 2, True)
    far = exported(positions + 1e5, species, graph.edge_index, shifts, [len(atoms)] * 2, True)
    assert float((near["forces"] - far["forces"]).abs().max()) < 1e-5
    assert float((near["energy"] - far["energy"]).abs()) < 1e-5
