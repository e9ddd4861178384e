"""Integration: the benchmark data in ../shared/data reads with the right keys and units."""

from pathlib import Path

import numpy as np
import pytest

from ictp_model.data.io import read_samples
from ictp_model.data.statistics import e0s_from_isolated_atoms

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"benchmark data folder {SHARED} is absent")


@needs_shared
def test_rmd17_npz_is_read_in_ev():
    samples = read_samples(SHARED / "rmd17" / "rmd17_ethanol_test_01.npz")
    raw = np.load(SHARED / "rmd17" / "rmd17_ethanol_test_01.npz")
    assert len(samples) == len(raw["energies"]) == 1000
    assert samples[0].atoms.get_chemical_formula() == "C2H6O"
    assert samples[7].energy == pytest.approx(raw["energies"][7] * 0.0433641, rel=1e-6)  # kcal/mol -> eV
    assert np.allclose(samples[7].forces, raw["forces"][7] * 0.0433641, rtol=1e-6)


@needs_shared
def test_acac_extxyz_and_isolated_atoms():
    train = read_samples(SHARED / "acac" / "train_300K.xyz")
    assert len(train) == 500 and train[0].forces.shape == (len(train[0].atoms), 3)
    e0 = e0s_from_isolated_atoms(read_samples(SHARED / "acac" / "isolated_atoms.xyz", require_forces=False))
    assert e0 == pytest.approx({"H": -13.5684, "C": -1026.8539, "O": -2037.7969}, abs=1e-3)
