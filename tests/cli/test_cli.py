"""`ictp train` / `ictp eval` from the command line: outputs, JSON, and bad input giving one clear
error with a non-zero exit, leaving earlier outputs untouched."""

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import read, write

from ictp_model.cli.main import main

from ..training.conftest import emt_files, tiny_config  # noqa: F401


@pytest.fixture(scope="module")
def trained(emt_files, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("run")
    args = [
        "train", "--train_file", str(emt_files / "train.xyz"), "--valid_size", "6", "--energy_key", "REF_energy",
        "--forces_key", "REF_forces", "--stress_key", "REF_stress", "--E0s", "isolated", "--model.preset", "small",
        "--model.channels", "4", "--model.radial_mlp", "[8]", "--max_epochs", "2", "--output_dir", str(out),
        "--progress", "false",
    ]  # fmt: skip
    assert main(args) == 0
    return out


def test_eval_prints_writes_json_and_predictions(trained, emt_files, tmp_path, capsys):  # noqa: F811
    code = main([
        "eval", "--model", str(trained / "model.pt"), "--data", str(emt_files / "test.xyz"), "--energy-key", "REF_energy",
        "--forces-key", "REF_forces", "--stress-key", "REF_stress", "--json", str(tmp_path / "m.json"),
        "--write-predictions", str(tmp_path / "pred.xyz"),
    ])  # fmt: skip
    assert code == 0
    assert "test.xyz:bulk" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "m.json").read_text())["test.xyz"]
    for key in (
        "energy_rmse",
        "energy_mae",
        "energy_per_atom_rmse",
        "forces_rmse",
        "forces_mae",
        "stress_rmse",
        "n_structures",
    ):
        assert key in metrics
    assert metrics["n_structures"] == 6 and metrics["forces_rmse"] > 0
    frames = read(tmp_path / "pred.xyz", ":")
    assert len(frames) == 6 and "ICTP_forces" in frames[0].arrays and "ICTP_energy" in frames[0].info


def test_eval_rejects_unknown_elements(trained, tmp_path, capsys):
    atoms = Atoms("CuFe", positions=[[0, 0, 0], [2, 0, 0]])
    atoms.info["energy"] = 0.0
    atoms.arrays["forces"] = np.zeros((2, 3))
    write(tmp_path / "fe.xyz", [atoms], format="extxyz")
    assert main(["eval", "--model", str(trained / "model.pt"), "--data", str(tmp_path / "fe.xyz")]) == 2
    assert (
        "fe.xyz: frame 0: key 'numbers': elements ['Fe'] are not in the model's ['Cu', 'Au']" in capsys.readouterr().err
    )


def test_eval_rejects_foreign_and_truncated_models(trained, emt_files, tmp_path, capsys):  # noqa: F811
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    assert main(["eval", "--model", str(tmp_path / "foreign.pt"), "--data", str(emt_files / "test.xyz")]) == 2
    assert "not an ictp model file" in capsys.readouterr().err
    (tmp_path / "cut.pt").write_bytes((trained / "model.pt").read_bytes()[:100])
    assert main(["eval", "--model", str(tmp_path / "cut.pt"), "--data", str(emt_files / "test.xyz")]) == 2
    assert "not a readable ictp model file" in capsys.readouterr().err


def test_bad_training_input_fails_cleanly_and_keeps_earlier_outputs(trained, emt_files, tmp_path, capsys):  # noqa: F811
    before = (trained / "model.pt").read_bytes()
    frames = read(emt_files / "train.xyz", ":")
    frames[5].arrays["REF_forces"][0, 0] = np.inf
    write(tmp_path / "bad.xyz", frames, format="extxyz")
    code = main([
        "train", "--train_file", str(tmp_path / "bad.xyz"), "--energy_key", "REF_energy", "--forces_key", "REF_forces",
        "--output_dir", str(trained), "--progress", "false", "--restart",
    ])  # fmt: skip
    assert code == 2  # --restart replaces the old run only once the new one's data has been read
    assert "bad.xyz: frame 5: key 'REF_forces': contains NaN or inf" in capsys.readouterr().err
    assert (trained / "model.pt").read_bytes() == before
    assert main(["train", "--train_file", "x.xyz", "--max_epoch", "3"]) == 2
    assert "unknown config keys ['max_epoch']" in capsys.readouterr().err
