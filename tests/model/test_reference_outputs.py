"""Stored outputs of small seeded models: a change to the model's numbers (intended or not) fails
here.  After a deliberate change, regenerate with ICTP_UPDATE_REFERENCE=1 pytest this file and
commit the new JSON with the change that explains it."""

import json
import os
from pathlib import Path

import pytest

from .structures import VARIANTS, evaluate, organic_molecule, small_model, triclinic_cell

REFERENCE = Path(__file__).resolve().parents[1] / "references" / "model_outputs.json"
CASES = [(v, s) for v in VARIANTS for s in ("compact", "dense")]


def outputs() -> dict:
    result = {}
    for variant, storage in CASES:
        # the paper's edge-harmonic scale: "component" is checked against it in test_edge_harmonics
        model = small_model(variant=variant, storage=storage, odd=True, edge_harmonics="paper")
        for name, atoms in (("molecule", organic_molecule()), ("cell", triclinic_cell())):
            out = evaluate(model, atoms, stress=name == "cell")
            entry = {k: out[k].detach().reshape(-1).tolist() for k in ("energy", "node_energy", "forces")}
            if name == "cell":
                entry["stress"] = out["stress"].detach().reshape(-1).tolist()
            result[f"{variant}/{storage}/{name}"] = entry
    return result


def test_model_outputs_equal_the_stored_reference():
    current = outputs()
    if os.environ.get("ICTP_UPDATE_REFERENCE") == "1":
        REFERENCE.write_text(json.dumps(current, indent=0))
    stored = json.loads(REFERENCE.read_text())
    assert sorted(stored) == sorted(current)
    for case, values in stored.items():
        for key, numbers in values.items():
            assert current[case][key] == pytest.approx(numbers, rel=1e-10, abs=1e-12), f"{case}: {key}"
