"""`pair_style ictp device cuda` equals the CPU in LAMMPS (float64, 1e-10): the TorchScript export
in its plain and bounded-memory evaluations and the .pt2 compiled for CUDA (plain and in chunks), on the test systems of
test_pair_ictp, and two ranks sharing one GPU over an MD run equal one CPU rank.

Skipped where torch sees no GPU (CI); run on a GPU machine (README, "GPUs")."""

import numpy as np
import pytest

from .helpers import evaluate_in_lammps
from .test_bounded import budget_for
from .test_mpi import assert_a_rank_without_atoms_changes_nothing, assert_two_ranks_over_md_equal
from .test_pair_ictp import CASES, cubic_cell

TIGHT = dict(rtol=1e-10, atol=1e-10)
GPU = "ictp device cuda"


def assert_same(got: dict, want: dict, periodic: bool) -> None:
    for key in ("forces", "energies", "atom_virial") + (("virial",) if periodic else ()):
        np.testing.assert_allclose(got[key], want[key], err_msg=key, **TIGHT)
    assert got["energy"] == pytest.approx(want["energy"], rel=1e-12, abs=1e-10)


def in_lammps(plugin, model, atoms, order, folder, pair_style: str) -> dict:
    folder.mkdir()
    return evaluate_in_lammps(plugin, model, atoms, order, folder, pair_style)


@pytest.mark.parametrize("case", CASES)
def test_gpu_equals_cpu_in_lammps(plugin, exported, cuda, tmp_path, case):
    make, order = CASES[case]
    atoms = make()
    want = in_lammps(plugin, exported[1], atoms, order, tmp_path / "cpu", "ictp")
    got = in_lammps(plugin, exported[1], atoms, order, tmp_path / "gpu", GPU)
    assert_same(got, want, atoms.pbc.all())


def test_bounded_evaluation_on_the_gpu_equals_the_plain_one(plugin, exported, cuda, tmp_path):
    model, path = exported
    atoms = cubic_cell()
    want = in_lammps(plugin, path, atoms, ["H", "C", "N", "O"], tmp_path / "cpu", "ictp")
    style = f"{GPU} memory {budget_for(model, 15)}"
    assert_same(in_lammps(plugin, path, atoms, ["H", "C", "N", "O"], tmp_path / "gpu", style), want, True)


@pytest.mark.parametrize("case", CASES)
def test_cuda_package_equals_the_torchscript_export_on_the_cpu(
    plugin, exported_light, compiled_light_cuda, tmp_path, case
):
    make, order = CASES[case]
    atoms = make()
    want = in_lammps(plugin, exported_light[1], atoms, order, tmp_path / "pt", "ictp")
    got = in_lammps(plugin, compiled_light_cuda[1], atoms, order, tmp_path / "pt2", GPU)
    assert_same(got, want, atoms.pbc.all())


def test_cuda_package_in_chunks_equals_the_torchscript_export_on_the_cpu(
    plugin, exported_light, compiled_light_cuda, tmp_path
):
    model, package = compiled_light_cuda
    atoms = cubic_cell()
    want = in_lammps(plugin, exported_light[1], atoms, ["H", "C", "N", "O"], tmp_path / "pt", "ictp")
    style = f"{GPU} memory {budget_for(model, 15)}"
    assert_same(in_lammps(plugin, package, atoms, ["H", "C", "N", "O"], tmp_path / "pt2", style), want, True)


def test_two_ranks_on_one_gpu_over_md_equal_one_cpu_rank(plugin, exported_light, cuda, tmp_path):
    assert_two_ranks_over_md_equal(plugin, exported_light[1], exported_light[1], tmp_path, 1, GPU)


def test_cuda_package_on_two_ranks_over_md_equals_one_cpu_rank(plugin, exported_light, compiled_light_cuda, tmp_path):
    assert_two_ranks_over_md_equal(plugin, compiled_light_cuda[1], exported_light[1], tmp_path, 1, GPU)


def test_a_gpu_rank_without_atoms(plugin, exported_light, cuda, tmp_path):
    assert_a_rank_without_atoms_changes_nothing(plugin, exported_light[1], exported_light[1], tmp_path, GPU)
