"""Inputs that used to give NaN or a silently wrong model: overlapping atoms, labels present under
two names, and what the calculator does with them."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from ictp_model.calculators.ase import ICTPCalculator
from ictp_model.cli.main import main
from ictp_model.data.io import DataError, Keys, label_summary, read_samples

from ..model.structures import small_model


def _labelled(positions, energy=-1.0, **info) -> Atoms:
    atoms = Atoms("H2O", positions=positions)
    atoms.info.update(info)
    atoms.info["REF_energy"] = energy
    atoms.arrays["REF_forces"] = np.zeros((3, 3))
    return atoms


GOOD = [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]


def test_overlapping_atoms_in_data_name_file_frame_and_atoms(tmp_path, capsys):
    frames = [_labelled(GOOD), _labelled(GOOD), _labelled([[0, 0, 0], [0.96, 0, 0], [0.96, 0.05, 0]])]
    write(tmp_path / "d.xyz", frames, format="extxyz")
    with pytest.raises(DataError, match=r"d.xyz: frame 2: key 'positions': atoms 1 and 2 are 0.0500 A apart"):
        read_samples(tmp_path / "d.xyz")
    out = tmp_path / "run"
    assert (
        main(["train", "--train_file", str(tmp_path / "d.xyz"), "--output_dir", str(out), "--progress", "false"]) == 2
    )
    assert "frame 2: key 'positions': atoms 1 and 2" in capsys.readouterr().err
    assert not out.exists()  # nothing written: no NaN checkpoint, no misleading missing model.pt


def test_overlapping_atoms_in_rmd17_npz(tmp_path):
    r = np.array([GOOD, GOOD], dtype=float)
    r[1, 2] = r[1, 0]
    np.savez(
        tmp_path / "m.npz", nuclear_charges=np.array([1, 1, 8]), coords=r, energies=np.zeros(2), forces=np.zeros_like(r)
    )
    with pytest.raises(DataError, match=r"m.npz: frame 1: key 'positions': atoms 0 and 2 are 0.0000 A apart"):
        read_samples(tmp_path / "m.npz")


def test_ref_labels_are_preferred_and_reported(tmp_path):
    atoms = _labelled(GOOD, energy=-5.0)
    atoms.calc = SinglePointCalculator(atoms, energy=-7.0, forces=np.ones((3, 3)))  # a previous model's predictions
    write(tmp_path / "both.xyz", [atoms, atoms], format="extxyz")
    samples = read_samples(tmp_path / "both.xyz")
    assert samples[0].energy == -5.0 and np.all(samples[0].forces == 0.0)
    assert label_summary(samples) == "energy <- REF_energy, forces <- REF_forces, stress: none"
    explicit = read_samples(tmp_path / "both.xyz", Keys(energy="energy", forces="forces"))
    assert explicit[0].energy == -7.0 and np.all(explicit[0].forces == 1.0)


def test_a_file_mixing_ref_and_plain_labels_is_refused(tmp_path):
    plain = Atoms("H2O", positions=GOOD)
    plain.calc = SinglePointCalculator(plain, energy=-7.0, forces=np.ones((3, 3)))
    write(tmp_path / "mixed.xyz", [_labelled(GOOD), plain], format="extxyz")
    with pytest.raises(
        DataError,
        match=r"mixed.xyz: frame 1: key 'energy': energy read from 'energy' here but from 'REF_energy' in frame 0",
    ):
        read_samples(tmp_path / "mixed.xyz")


def test_training_logs_which_keys_it_used(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = [_labelled(np.array(GOOD) + 0.05 * rng.standard_normal((3, 3)), energy=-1.0 - 0.1 * k) for k in range(8)]
    write(tmp_path / "d.xyz", frames, format="extxyz")
    args = [
        "train",
        "--train_file",
        str(tmp_path / "d.xyz"),
        "--valid_size",
        "2",
        "--max_epochs",
        "1",
        "--progress",
        "false",
    ]
    args += ["--model.channels", "4", "--output_dir", str(tmp_path / "run")]
    assert main(args) == 0
    assert "labels (train): energy <- REF_energy, forces <- REF_forces, stress: none" in capsys.readouterr().out


@pytest.fixture(scope="module")
def calculator():
    return ICTPCalculator(small_model(max_rank=1, edge_rank=2, correlation=2))


def test_calculator_refuses_overlapping_atoms(calculator):
    atoms = Atoms("HCO", positions=[[0, 0, 0], [1.2, 0, 0], [1.2, 0.0, 1e-3]])
    atoms.calc = calculator
    with pytest.raises(ValueError, match="ICTPCalculator: atoms 1 and 2 are 0.0010 A apart"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match="ICTPCalculator: atoms 1 and 2"):
        calculator.calculate_batch([atoms])


def test_calculator_checks_distances_when_it_reuses_its_neighbour_list(calculator):
    atoms = Atoms("HCO", positions=[[0, 0, 0], [1.2, 0, 0], [1.2, 0.0, 0.3]])
    atoms.calc = calculator
    atoms.get_potential_energy()
    atoms.positions[2, 2] = 0.05  # moved less than skin / 2: the cached list is reused
    with pytest.raises(ValueError, match="atoms 1 and 2 are 0.0500 A apart"):
        atoms.get_forces()


def test_empty_atoms_have_zero_energy_and_no_forces(calculator):
    for atoms in (Atoms(), Atoms(cell=np.eye(3) * 5.0, pbc=True)):
        atoms.calc = calculator
        assert atoms.get_potential_energy() == 0.0
        assert atoms.get_forces().shape == (0, 3)
        assert atoms.get_potential_energies().shape == (0,)
        if atoms.pbc.any():
            assert np.all(atoms.get_stress() == 0.0)


def test_a_lammps_export_given_to_the_calculator_says_what_it_is(tmp_path):
    from ictp_export import export_model

    export_model(small_model(max_rank=1, edge_rank=2, correlation=2), tmp_path / "model-lammps.pt")
    with pytest.raises(ValueError, match="is a LAMMPS export written by 'ictp export'.*give the model.pt"):
        ICTPCalculator(tmp_path / "model-lammps.pt")
