"""Forces and stress against finite differences; smoothness at the cutoff."""

import numpy as np
import pytest
from ase import Atoms

from .structures import VARIANTS, evaluate, organic_molecule, slab, small_model, triclinic_cell


def energy(model, atoms) -> float:
    return float(evaluate(model, atoms)["energy"][0])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("atoms_fn", [organic_molecule, triclinic_cell, slab])
def test_forces_match_finite_differences(variant, atoms_fn):
    model = small_model(variant=variant, odd=variant == "full")
    atoms = atoms_fn()
    forces = evaluate(model, atoms)["forces"].numpy()
    h = 1e-5
    numeric = np.zeros_like(forces)
    for a in range(len(atoms)):
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[a, k] += h
            minus.positions[a, k] -= h
            numeric[a, k] = -(energy(model, plus) - energy(model, minus)) / (2 * h)
    np.testing.assert_allclose(forces, numeric, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("atoms_fn", [triclinic_cell, slab])
def test_stress_matches_finite_strain(atoms_fn):
    model = small_model()
    atoms = atoms_fn()
    stress = evaluate(model, atoms, stress=True)["stress"][0].numpy()
    h = 1e-6
    numeric = np.zeros((3, 3))
    for a in range(3):
        for b in range(3):
            values = []
            for sign in (1, -1):
                strain = np.eye(3)
                strain[a, b] += sign * h / 2
                strain[b, a] += sign * h / 2
                strained = atoms.copy()
                strained.set_cell(atoms.cell[:] @ strain, scale_atoms=True)
                values.append(energy(model, strained))
            numeric[a, b] = (values[0] - values[1]) / (2 * h) / atoms.get_volume()
    np.testing.assert_allclose(stress, numeric, atol=1e-7)
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)


def test_energy_and_force_are_smooth_at_the_cutoff():
    model = small_model()
    rc = model.cutoff

    def dimer(r):
        return Atoms("CO", positions=[[0, 0, 0], [r, 0, 0]])

    far = energy(model, dimer(rc + 0.5))
    isolated = energy(model, Atoms("C")) + energy(model, Atoms("O"))
    assert far == pytest.approx(isolated, abs=1e-12)
    for delta in (1e-2, 1e-3):
        inside = evaluate(model, dimer(rc - delta))
        # envelope: value, slope and curvature vanish at r_c, so E - E_far = O(delta^3)
        assert abs(float(inside["energy"][0]) - far) < 50 * delta**3
        assert float(inside["forces"].abs().max()) < 50 * delta**2
    assert float(evaluate(model, dimer(rc + 1e-3))["forces"].abs().max()) == 0.0


def test_isolated_atom_energy_is_its_e0():
    model = small_model(shift={"C": 0.25})
    for symbol, e0 in [("H", -1.5), ("C", -2.0 + 0.25), ("N", -3.0), ("O", -4.5)]:
        out = evaluate(model, Atoms(symbol))
        assert float(out["energy"][0]) == pytest.approx(e0, abs=1e-12)
        assert float(out["forces"].abs().max()) == 0.0
