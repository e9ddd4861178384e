"""pair_style ictp with the compiled export (.pt2) equals the same model's TorchScript export (.pt)
in LAMMPS: energies, forces, per-atom energies, virials and per-atom virials, on the test systems
of test_pair_ictp (periodic images, a cell smaller than the cutoff, types in another order), on
1 and 2 MPI ranks, over an MD run whose neighbour lists change (one package, no recompiling); and
its bounded-memory evaluation (`memory M`: chunks by the package's compiled steps) likewise."""

import re

import numpy as np
import pytest

from ..model.structures import triclinic_cell
from .helpers import evaluate_in_lammps
from .test_bounded import assert_chunked_md_equals_plain, budget_for
from .test_errors import run_lmp
from .test_mpi import assert_a_rank_without_atoms_changes_nothing, assert_two_ranks_over_md_equal
from .test_pair_ictp import CASES, cubic_cell

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


@pytest.mark.parametrize("make", [triclinic_cell, cubic_cell], ids=["triclinic", "cubic"])
def test_compiled_in_chunks_equals_torchscript_in_lammps(plugin, exported_light, compiled_light, tmp_path, make):
    model, package = compiled_light
    atoms = make()
    order = ["H", "C", "N", "O"]
    (tmp_path / "pt").mkdir()
    (tmp_path / "pt2").mkdir()
    want = evaluate_in_lammps(plugin, exported_light[1], atoms, order, tmp_path / "pt")
    style = f"ictp memory {budget_for(model, 15)}"
    got = evaluate_in_lammps(plugin, package, atoms, order, tmp_path / "pt2", style)
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-10)
    for key in ("forces", "energies", "virial", "atom_virial"):
        np.testing.assert_allclose(got[key], want[key], err_msg=key, **TIGHT)


def test_compiled_in_chunks_on_one_and_two_ranks(plugin, exported_light, compiled_light, tmp_path):
    model, package = compiled_light
    assert_chunked_md_equals_plain(plugin, package, exported_light[1], f"ictp memory {budget_for(model, 20)}", tmp_path)


def test_the_log_says_when_the_evaluation_runs_in_chunks(plugin, exported_light, compiled_light, tmp_path):
    model = compiled_light[0]
    for path in (exported_light[1], compiled_light[1]):
        code, out = run_lmp(
            tmp_path, plugin, [f"pair_style ictp memory {budget_for(model, 15)}", f"pair_coeff * * {path} H C N O"]
        )
        said = re.search(r"evaluating in chunks of at most (\d+) edges", out)
        assert code == 0 and said and 14 <= int(said.group(1)) <= 15, out[-1500:]  # (the budget is rounded)
        code, out = run_lmp(tmp_path, plugin, ["pair_style ictp", f"pair_coeff * * {path} H C N O"])
        assert code == 0 and "in chunks" not in out, out[-1500:]
