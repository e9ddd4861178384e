"""O(3), translation and permutation symmetry of energies, forces and stress."""

import numpy as np
import pytest
import torch

from ictp_model.tensor import random_o3

from .structures import VARIANTS, evaluate, organic_molecule, small_model, triclinic_cell

CASES = [(v, odd, s) for v in VARIANTS for odd in (False, True) for s in ("compact", "dense")]


def transformed(atoms, q: np.ndarray, shift=None):
    out = atoms.copy()
    out.positions = atoms.positions @ q.T + (0.0 if shift is None else shift)
    if atoms.pbc.any():
        out.cell = atoms.cell[:] @ q.T
    return out


@pytest.mark.parametrize("variant,odd,storage", CASES)
@pytest.mark.parametrize("reflection", [False, True])
def test_energy_is_invariant_and_forces_equivariant_under_o3(variant, odd, storage, reflection):
    model = small_model(variant=variant, odd=odd, storage=storage)
    q = random_o3(reflection=reflection).numpy()
    for atoms in (organic_molecule(), triclinic_cell()):
        ref = evaluate(model, atoms, stress=atoms.pbc.any())
        rot = evaluate(model, transformed(atoms, q), stress=atoms.pbc.any())
        qt = torch.as_tensor(q)
        assert torch.allclose(rot["energy"], ref["energy"], atol=1e-10)
        assert torch.allclose(rot["node_energy"], ref["node_energy"], atol=1e-10)
        assert torch.allclose(rot["forces"], ref["forces"] @ qt.T, atol=1e-10)
        if atoms.pbc.any():
            assert torch.allclose(rot["stress"][0], qt @ ref["stress"][0] @ qt.T, atol=1e-10)


@pytest.mark.parametrize("atoms_fn", [organic_molecule, triclinic_cell])
def test_translation_invariance(atoms_fn):
    model = small_model()
    atoms = atoms_fn()
    ref = evaluate(model, atoms)
    moved = evaluate(model, transformed(atoms, np.eye(3), shift=np.array([1.3, -7.2, 0.4])))
    assert torch.allclose(moved["energy"], ref["energy"], atol=1e-10)
    assert torch.allclose(moved["forces"], ref["forces"], atol=1e-10)


@pytest.mark.parametrize("atoms_fn", [organic_molecule, triclinic_cell])
def test_permutation_equivariance(atoms_fn):
    model = small_model(variant="full")
    atoms = atoms_fn()
    perm = np.random.default_rng(0).permutation(len(atoms))
    ref = evaluate(model, atoms)
    permuted = evaluate(model, atoms[perm])
    assert torch.allclose(permuted["energy"], ref["energy"], atol=1e-10)
    assert torch.allclose(permuted["forces"], ref["forces"][perm], atol=1e-10)
    assert torch.allclose(permuted["node_energy"], ref["node_energy"][perm], atol=1e-10)


def test_forces_sum_to_zero():
    model = small_model()
    for atoms in (organic_molecule(), triclinic_cell()):
        assert evaluate(model, atoms)["forces"].sum(0).abs().max() < 1e-10
