"""Saved models of the previous format (weights stored pre-scaled, format version 1) load as the
same function: stored models written by ictp 0.1 give the same energies, forces and per-atom
energies today."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import molecule

from ictp_model import ICTPCalculator, load_model
from ictp_model.model.io import FORMAT_VERSION

REFERENCES = Path(__file__).parent.parent / "references"


@pytest.mark.parametrize("name", ["sym", "symlt"])
def test_version_1_models_give_the_outputs_they_were_saved_with(name):
    expected = json.loads((REFERENCES / "model_v1_outputs.json").read_text())[name]
    assert FORMAT_VERSION == 2
    atoms = molecule("CH3CH2OH")
    atoms.positions = np.array(expected["positions"])
    atoms.calc = ICTPCalculator(load_model(REFERENCES / f"model_v1_{name}.pt"))
    assert abs(atoms.get_potential_energy() - expected["energy"]) < 1e-10
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(atoms.get_potential_energies(), expected["energies"], rtol=0, atol=1e-10)
