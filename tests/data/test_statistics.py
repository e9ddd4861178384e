import numpy as np
import pytest
from ase import Atoms

from ictp_model.data.io import Sample
from ictp_model.data.statistics import e0s_from_isolated_atoms, e0s_least_squares, force_rms


def test_least_squares_recovers_exact_e0s():
    rng = np.random.default_rng(0)
    true = {"H": -13.6, "O": -2041.0}
    samples = []
    for _ in range(10):
        symbols = rng.choice(["H", "O"], size=rng.integers(1, 6)).tolist()
        atoms = Atoms(symbols, positions=rng.normal(size=(len(symbols), 3)))
        samples.append(Sample(atoms, sum(true[s] for s in symbols), None))
    found = e0s_least_squares(samples, ["H", "O"])
    assert found["H"] == pytest.approx(true["H"]) and found["O"] == pytest.approx(true["O"])


def test_isolated_atoms_by_config_type_or_file_of_single_atoms():
    iso = [
        Sample(Atoms("H"), -1.0, None, config_type="IsolatedAtom"),
        Sample(Atoms("O"), -5.0, None, config_type="isolated_atom"),
    ]
    bulk = [Sample(Atoms("HO", positions=[[0, 0, 0], [1, 0, 0]]), -7.0, np.zeros((2, 3)))]
    assert e0s_from_isolated_atoms(iso + bulk) == {"H": -1.0, "O": -5.0}
    plain = [Sample(Atoms("H"), -2.0, None), Sample(Atoms("O"), -3.0, None)]
    assert e0s_from_isolated_atoms(plain) == {"H": -2.0, "O": -3.0}


def test_force_rms():
    samples = [Sample(Atoms("H2"), 0.0, np.array([[3.0, 0, 0], [0, 4.0, 0]]))]
    assert force_rms(samples) == pytest.approx(np.sqrt(25 / 6))
