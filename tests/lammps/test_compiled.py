"""pair_style ictp with the compiled export (.pt2) equals the same model's TorchScript export (.pt)
in LAMMPS: energies, forces, per-atom energies, virials and per-atom virials, on the test systems
of test_pair_ictp (periodic images, a cell smaller than the cutoff, types in another order), on
1 and 2 MPI ranks, over an MD run whose neighbour lists change (one package, no recompiling)."""

import numpy as np
import pytest

from .helpers import evaluate_in_lammps
from .test_errors import run_lmp
from .test_mpi import assert_a_rank_without_atoms_changes_nothing, assert_two_ranks_over_md_equal
from .test_pair_ictp import CASES

TIGHT = dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES)
def test_compiled_equals_torchscript_in_lammps(plugin, exported_light, compiled_light, tmp_path, case):
    make, order = CASES[case]
    atoms = make()
    (tmp_path / "pt").mkdir()
    (tmp_path / "pt2").mkdir()
    want = evaluate_in_lammps(plugin, exported_light[1], atoms, order, tmp_path / "pt")
    got = evaluate_in_lammps(plugin, compiled_light[1], atoms, order, tmp_path / "pt2")
    for key in ("forces", "energies", "atom_virial") + (("virial",) if atoms.pbc.all() else ()):
        np.testing.assert_allclose(got[key], want[key], err_msg=key, **TIGHT)
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-12, abs=1e-10)


def test_compiled_on_two_ranks_over_md_equals_torchscript(plugin, exported_light, compiled_light, tmp_path):
    assert_two_ranks_over_md_equal(plugin, compiled_light[1], exported_light[1], tmp_path)


def test_compiled_on_a_rank_without_atoms(plugin, exported_light, compiled_light, tmp_path):
    assert_a_rank_without_atoms_changes_nothing(plugin, compiled_light[1], exported_light[1], tmp_path)


def test_bad_compiled_files_and_elements_are_refused(plugin, compiled_light, tmp_path):
    bad = tmp_path / "model.pt2"
    bad.write_bytes(b"not a package")
    code, out = run_lmp(tmp_path, plugin, ["pair_style ictp", f"pair_coeff * * {bad} H C N O"])
    assert code != 0 and "cannot read the compiled model" in out, out[-800:]
    code, out = run_lmp(tmp_path, plugin, ["pair_style ictp", f"pair_coeff * * {compiled_light[1]} H C N Fe"])
    assert code != 0 and "element 'Fe' (type 4) is not in the model" in out, out[-800:]
