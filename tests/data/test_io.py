"""Reading labelled data: formats, keys, units and clear errors naming file, frame and key."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect
from ase.io import write

from ictp_model.data.io import KCAL_PER_MOL, DataError, Keys, read_samples


def frames(n=3, with_stress=True):
    out = []
    rng = np.random.default_rng(0)
    for i in range(n):
        atoms = Atoms("CuAu", positions=[[0, 0, 0], [1.5, 1.0, 0.5]], cell=np.eye(3) * 4, pbc=True)
        atoms.info["REF_energy"] = -1.0 - i
        atoms.arrays["REF_forces"] = rng.normal(size=(2, 3))
        if with_stress:
            atoms.info["REF_stress"] = rng.normal(size=6)
        atoms.info["config_type"] = "bulk"
        out.append(atoms)
    return out


def test_extxyz_with_mace_style_keys(tmp_path):
    path = tmp_path / "data.xyz"
    write(path, frames(), format="extxyz")
    samples = read_samples(path, Keys(energy="REF_energy", forces="REF_forces", stress="REF_stress"))
    assert [s.energy for s in samples] == [-1.0, -2.0, -3.0]
    assert samples[0].forces.shape == (2, 3) and samples[0].stress.shape == (3, 3)
    assert np.allclose(samples[0].stress, samples[0].stress.T)
    assert samples[1].config_type == "bulk" and samples[1].frame == 1


def test_plain_energy_and_forces_stored_in_a_calculator(tmp_path):
    atoms = Atoms("H2", positions=[[0, 0, 0], [0.8, 0, 0]])
    atoms.calc = SinglePointCalculator(atoms, energy=-3.0, forces=np.ones((2, 3)))
    write(tmp_path / "plain.xyz", [atoms], format="extxyz")  # ASE writes energy= and forces
    (sample,) = read_samples(tmp_path / "plain.xyz")
    assert sample.energy == -3.0 and np.all(sample.forces == 1.0) and sample.stress is None


def test_virials_are_converted_to_stress(tmp_path):
    atoms = frames(1, with_stress=False)[0]
    atoms.info["REF_virials"] = np.arange(9.0).reshape(3, 3) + np.arange(9.0).reshape(3, 3).T
    write(tmp_path / "v.xyz", [atoms], format="extxyz")
    (sample,) = read_samples(tmp_path / "v.xyz", Keys("REF_energy", "REF_forces", "REF_stress", "REF_virials"))
    assert np.allclose(sample.stress, -atoms.info["REF_virials"] / atoms.get_volume())


@pytest.mark.parametrize("style", ["rmd17", "md22"])
def test_npz_is_converted_from_kcal_per_mol(tmp_path, style):
    z, r = np.array([6, 1]), np.random.default_rng(0).normal(size=(4, 2, 3))
    e, f = np.arange(4.0), np.ones((4, 2, 3))
    keys = ("nuclear_charges", "coords", "energies", "forces") if style == "rmd17" else ("z", "R", "E", "F")
    np.savez(tmp_path / "d.npz", **dict(zip(keys, (z, r, e, f))))
    samples = read_samples(tmp_path / "d.npz")
    assert len(samples) == 4
    assert samples[2].energy == pytest.approx(2.0 * 0.0433641, rel=1e-5)
    assert np.allclose(samples[0].forces, KCAL_PER_MOL)
    assert np.allclose(samples[3].atoms.positions, r[3])


def test_ase_database(tmp_path):
    db = connect(tmp_path / "d.db")
    for atoms in frames(2, with_stress=False):
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.info["REF_energy"], forces=atoms.arrays["REF_forces"])
        db.write(atoms)
    samples = read_samples(tmp_path / "d.db")
    assert [s.energy for s in samples] == [-1.0, -2.0]


def _write_bad(tmp_path, edit):
    data = frames()
    edit(data)
    path = tmp_path / "bad.xyz"
    write(path, data, format="extxyz")
    return path


KEYS = Keys("REF_energy", "REF_forces", "REF_stress")


def test_missing_key_names_file_frame_and_key(tmp_path):
    path = _write_bad(tmp_path, lambda d: d[1].info.pop("REF_energy"))
    with pytest.raises(DataError, match=r"bad.xyz: frame 1: key 'REF_energy': missing energy"):
        read_samples(path, KEYS)


def test_nan_label_names_file_frame_and_key(tmp_path):
    def edit(d):
        d[2].arrays["REF_forces"][0, 1] = np.nan

    with pytest.raises(DataError, match=r"bad.xyz: frame 2: key 'REF_forces': contains NaN"):
        read_samples(_write_bad(tmp_path, edit), KEYS)


def test_wrong_stress_shape_is_reported(tmp_path):
    def edit(d):
        d[0].info["REF_stress"] = np.ones(4)

    with pytest.raises(DataError, match=r"frame 0: key 'REF_stress': expected 6 or 9 numbers, got 4"):
        read_samples(_write_bad(tmp_path, edit), KEYS)


def test_wrong_npz_shapes_are_reported(tmp_path):
    np.savez(tmp_path / "d.npz", z=np.array([6, 1]), R=np.zeros((3, 2, 3)), E=np.zeros(3), F=np.zeros((3, 3, 3)))
    with pytest.raises(DataError, match=r"d.npz: frame -: key 'F'"):
        read_samples(tmp_path / "d.npz")


def test_empty_truncated_and_missing_files(tmp_path):
    (tmp_path / "empty.xyz").write_text("")
    with pytest.raises(DataError, match="empty.xyz: .*the file is empty"):
        read_samples(tmp_path / "empty.xyz", KEYS)
    write(tmp_path / "good.xyz", frames(), format="extxyz")
    text = (tmp_path / "good.xyz").read_text().splitlines()
    (tmp_path / "truncated.xyz").write_text("\n".join(text[:-1]) + "\n")
    with pytest.raises(DataError, match="truncated.xyz: .*cannot be read"):
        read_samples(tmp_path / "truncated.xyz", KEYS)
    with pytest.raises(DataError, match="missing.xyz: .*no such file"):
        read_samples(tmp_path / "missing.xyz", KEYS)
