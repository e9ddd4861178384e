"""pair_style ictp in LAMMPS against the ASE calculator on the same model (float64)."""

import numpy as np
import pytest
from ase import Atoms

from ictp_model import ICTPCalculator

from ..model.structures import organic_molecule, triclinic_cell
from .helpers import evaluate_in_lammps


def cubic_cell() -> Atoms:
    rng = np.random.default_rng(3)
    atoms = Atoms("HCNO" * 4, scaled_positions=rng.random((16, 3)), cell=np.eye(3) * 6.2, pbc=True)
    return atoms


def tiny_cell() -> Atoms:
    """Two atoms in a 2.9 Å cell: each sees several images of itself and of the other."""
    return Atoms(
        "CO",
        positions=[[0.1, 0.2, 0.3], [1.4, 1.6, 1.2]],
        cell=[[2.9, 0, 0], [0.4, 3.0, 0], [0.3, -0.5, 3.1]],
        pbc=True,
    )


CASES = {
    "molecule": (organic_molecule, ["H", "C", "N", "O"]),
    "cubic": (cubic_cell, ["H", "C", "N", "O"]),
    "triclinic": (triclinic_cell, ["H", "C", "N", "O"]),
    "cell smaller than the cutoff": (tiny_cell, ["C", "O"]),
    "types in another order": (cubic_cell, ["O", "N", "H", "C"]),
}


@pytest.mark.parametrize("case", CASES)
def test_lammps_matches_ase(plugin, exported, tmp_path, case):
    model, path = exported
    make, order = CASES[case]
    atoms = make()
    lmp = evaluate_in_lammps(plugin, path, atoms, order, tmp_path)
    atoms.calc = ICTPCalculator(model)
    assert lmp["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-8)
    np.testing.assert_allclose(lmp["forces"], atoms.get_forces(), atol=1e-8)
    np.testing.assert_allclose(lmp["energies"], atoms.get_potential_energies(), atol=1e-8)
    if atoms.pbc.all():
        virial = -atoms.get_stress(voigt=False) * atoms.get_volume()
        np.testing.assert_allclose(lmp["virial"], virial, atol=1e-8)
