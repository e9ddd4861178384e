"""Python MD: neighbour-list reuse, batching, committees, NVE conservation, `ictp md`, bad input."""

import csv

import numpy as np
import pytest
from ase import Atoms, units
from ase.io import read, write
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from ictp_model import ICTPCalculator, save_model
from ictp_model.cli.main import main

from ..model.structures import organic_molecule, small_model, triclinic_cell


def test_neighbour_list_reuse_within_the_skin_gives_identical_results():
    model = small_model()
    cached = ICTPCalculator(model, skin=0.6)
    atoms = triclinic_cell()
    rng = np.random.default_rng(0)
    for _ in range(8):
        atoms.positions += rng.normal(scale=0.03, size=atoms.positions.shape)
        fresh = ICTPCalculator(model, skin=0.0)
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = cached, fresh
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-12)
        np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=1e-12)
    assert cached.neighbours.builds < 8


def test_batch_equals_one_by_one():
    calc = ICTPCalculator(small_model())
    structures = [organic_molecule(), triclinic_cell(), Atoms("O")]
    batched = calc.calculate_batch(structures)
    for atoms, result in zip(structures, batched):
        single = ICTPCalculator(small_model())
        atoms.calc = single
        assert result["energy"] == pytest.approx(atoms.get_potential_energy(), abs=1e-10)
        np.testing.assert_allclose(result["forces"], atoms.get_forces(), atol=1e-10)


def test_committee_spread():
    atoms = organic_molecule()
    same = ICTPCalculator([small_model(seed=1), small_model(seed=1)])
    atoms.calc = same
    atoms.get_potential_energy()
    assert same.results["energy_std"] == 0.0 and np.all(same.results["forces_std"] == 0.0)
    members = [small_model(seed=1), small_model(seed=2)]
    spread = ICTPCalculator(members)
    atoms.calc = spread
    energy = atoms.get_potential_energy()
    singles = [ICTPCalculator(m).get_potential_energy(atoms.copy()) for m in members]
    assert energy == pytest.approx(np.mean(singles), abs=1e-10)
    assert spread.results["energy_std"] == pytest.approx(np.std(singles), abs=1e-10)
    assert spread.results["forces_std"].shape == (len(atoms), 3) and spread.results["forces_std"].max() > 0


def test_float32_calculator_is_close_to_float64():
    atoms = organic_molecule()
    e64 = ICTPCalculator(small_model()).get_potential_energy(atoms)
    e32 = ICTPCalculator(small_model(), dtype="float32").get_potential_energy(atoms.copy())
    assert e32 == pytest.approx(e64, rel=1e-5)


def test_nve_conserves_energy():
    atoms = organic_molecule()
    atoms.calc = ICTPCalculator(small_model())
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = VelocityVerlet(atoms, 0.25 * units.fs)
    totals = []
    for _ in range(300):
        dyn.run(1)
        totals.append(atoms.get_total_energy())
    drift = (max(totals) - min(totals)) / len(atoms)
    assert drift < 2e-4, f"energy varied by {drift:.2e} eV/atom in 300 steps"


@pytest.mark.parametrize(
    "atoms, message",
    [
        (Atoms("FeH", positions=[[0, 0, 0], [1, 0, 0]]), r"elements \['Fe'\] are not known"),
        (Atoms("CH", positions=[[0, 0, 0], [np.nan, 0, 0]]), "NaN"),
        (Atoms("CH", positions=[[0, 0, 0], [1, 0, 0]], cell=np.zeros((3, 3)), pbc=True), "zero volume"),
    ],
)
def test_bad_input_is_a_clear_error(atoms, message):
    atoms.calc = ICTPCalculator(small_model())
    with pytest.raises(ValueError, match=message):
        atoms.get_potential_energy()


def test_ictp_md_command(tmp_path, capsys):
    save_model(small_model(), tmp_path / "model.pt")
    write(tmp_path / "start.xyz", organic_molecule())
    out = tmp_path / "traj.xyz"
    args = [
        "md",
        "--model",
        str(tmp_path / "model.pt"),
        str(tmp_path / "model.pt"),
        "--structure",
        str(tmp_path / "start.xyz"),
    ]
    code = main(args + ["--ensemble", "nvt", "--steps", "20", "--log-every", "5", "--out", str(out)])
    assert code == 0
    frames = read(out, ":")
    assert len(frames) == 5
    rows = list(csv.DictReader(open(tmp_path / "traj.csv")))
    assert [int(r["step"]) for r in rows] == [0, 5, 10, 15, 20] and "energy_std_eV" in rows[0]
    assert "ns/day" in capsys.readouterr().out
    # an unphysical run stops with a message and exit code 3, and keeps what it wrote
    stopped = tmp_path / "stop.xyz"
    code = main(
        args + ["--ensemble", "nve", "--steps", "50", "--log-every", "1", "--max-drift", "1e-9", "--out", str(stopped)]
    )
    assert code == 3
    assert "total energy drifted" in capsys.readouterr().out
    assert len(read(stopped, ":")) >= 1 and len(list(csv.DictReader(open(tmp_path / "stop.csv")))) >= 1
    code = main(args + ["--steps", "5", "--min-distance", "5.0", "--out", str(tmp_path / "close.xyz")])
    assert code == 3 and "apart (threshold 5.0 A)" in capsys.readouterr().out


def test_npt_and_optimisers_run_with_the_calculator(tmp_path):
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    save_model(small_model(), tmp_path / "model.pt")
    write(tmp_path / "cell.xyz", triclinic_cell().repeat((2, 1, 1)))
    out = tmp_path / "npt.xyz"
    args = ["md", "--model", str(tmp_path / "model.pt"), "--structure", str(tmp_path / "cell.xyz"), "--ensemble", "npt"]
    # a random model's forces are arbitrary: short, cold steps keep atoms apart for the 10 steps
    options = [
        "--steps",
        "10",
        "--log-every",
        "5",
        "--min-distance",
        "0.3",
        "--timestep",
        "0.25",
        "--temperature",
        "50",
    ]
    assert main(args + options + ["--out", str(out)]) == 0
    frames = read(out, ":")
    assert len(frames) == 3 and not np.allclose(frames[0].cell[:], frames[-1].cell[:])  # the barostat moved the cell
    atoms = triclinic_cell()
    atoms.calc = ICTPCalculator(small_model())
    start = atoms.get_potential_energy()
    BFGS(FrechetCellFilter(atoms), logfile=None, maxstep=0.02).run(fmax=1e-3, steps=5)  # small steps on a random model
    assert atoms.get_potential_energy() < start  # relaxing positions and cell lowers the energy
