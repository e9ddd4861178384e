"""The ASE calculator: properties, numerical forces and stress, per-atom energies."""

import numpy as np
import pytest
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.filters import FrechetCellFilter

from ictp_model import ICTPCalculator, save_model

from ..model.structures import organic_molecule, small_model, triclinic_cell


def test_calculator_forces_match_ase_numerical_forces():
    atoms = organic_molecule()
    atoms.calc = ICTPCalculator(small_model())
    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(atoms.get_forces(), numeric, atol=1e-7)
    assert atoms.get_potential_energy() == pytest.approx(atoms.get_potential_energies().sum(), abs=1e-10)
    assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


def test_calculator_stress_matches_finite_strain_through_cell_filter():
    atoms = triclinic_cell()
    atoms.calc = ICTPCalculator(small_model())
    stress = atoms.get_stress(voigt=False)
    numeric = calculate_numerical_stress(atoms, eps=1e-6, voigt=False)
    np.testing.assert_allclose(stress, numeric, atol=1e-7)
    # FrechetCellFilter's generalised forces are the stress scaled by the volume (MACE's test idea)
    filt = FrechetCellFilter(atoms)
    cell_forces = filt.get_forces()[len(atoms) :]
    np.testing.assert_allclose(cell_forces, -stress * atoms.get_volume() / filt.exp_cell_factor, atol=1e-8)


def test_calculator_loads_a_saved_model(tmp_path):
    model = small_model()
    save_model(model, tmp_path / "model.pt")
    atoms = organic_molecule()
    a = ICTPCalculator(model).get_potential_energy(atoms)
    b = ICTPCalculator(tmp_path / "model.pt").get_potential_energy(atoms)
    assert a == b
