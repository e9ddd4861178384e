"""TorchScript compatibility and save/load."""

import pytest
import torch

from ictp_model.data.graph import graph_from_atoms
from ictp_model.model import build_model, compute_properties, load_model, save_model
from ictp_model.model.io import FORMAT_VERSION

from .structures import evaluate, organic_molecule, small_model, triclinic_cell


@pytest.mark.parametrize(
    "variant,odd,storage", [("sym", False, "compact"), ("sym+lt", True, "dense"), ("full", True, "compact")]
)
def test_scripted_model_equals_eager(variant, odd, storage):
    model = small_model(variant=variant, odd=odd, storage=storage)
    scripted = torch.jit.script(model)
    for atoms in (organic_molecule(), triclinic_cell()):
        graph = graph_from_atoms(atoms, model.cutoff)
        eager = compute_properties(model, graph, forces=True, stress=True)
        script = compute_properties(scripted, graph, forces=True, stress=True)
        for key in ("energy", "node_energy", "forces", "stress"):
            assert torch.allclose(script[key], eager[key], atol=1e-12), key


def test_save_and_load_round_trip(tmp_path):
    model = small_model(variant="sym+lt", odd=True)
    path = tmp_path / "model.pt"
    save_model(model, path)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "ictp-model" and payload["format_version"] == FORMAT_VERSION == 2
    assert payload["config"]["variant"] == "sym+lt"
    loaded = load_model(path)
    for atoms in (organic_molecule(), triclinic_cell()):
        a, b = evaluate(model, atoms, stress=True), evaluate(loaded, atoms, stress=True)
        for key in a:
            assert torch.equal(a[key], b[key])
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_foreign_and_corrupt_files_are_clear_errors(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="not an ictp model file"):
        load_model(foreign)
    truncated = tmp_path / "truncated.pt"
    save_model(small_model(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable ictp model file"):
        load_model(truncated)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


def test_build_model_validates_keys_and_presets():
    with pytest.raises(ValueError, match=r"unknown model keys \['chanels'\]"):
        build_model({"elements": ["H"], "chanels": 4})
    with pytest.raises(ValueError, match="variant"):
        build_model({"elements": ["H"], "variant": "sym+lat"})
    model = build_model({"preset": "small", "elements": ["H", "O"], "channels": 4})
    assert model.config.channels == 4 and model.config.cutoff == 4.0
    assert model.embedding.dtype == torch.float64
