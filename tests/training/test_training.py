"""End-to-end training: outputs, learning, exact resume, E0 methods, overrides."""

import csv

import numpy as np
import pytest
import torch
import yaml

from ictp_model import load_model
from ictp_model.model.config import ModelConfig
from ictp_model.training.config import ConfigError, load_train_config, parse_overrides
from ictp_model.training.run import run_training

from .conftest import tiny_config


def read_log(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_train_writes_outputs_and_validation_loss_decreases(emt_files, tmp_path):
    results = run_training(
        tiny_config(emt_files, tmp_path / "run", max_epochs=8, ema_decay=0.8, E0s="isolated"), log=lambda s: None
    )
    out = tmp_path / "run"
    for name in (
        "model.pt",
        "checkpoint_last.pt",
        "config.yaml",
        "log.csv",
        "learning_curve.png",
        "parity.png",
        "metrics.json",
    ):
        assert (out / name).is_file(), name
    rows = read_log(out / "log.csv")
    assert len(rows) == 8
    assert float(rows[-1]["valid_loss"]) < 0.75 * float(rows[0]["valid_loss"])
    assert set(results) >= {"valid", "test"} and results["test"]["n_structures"] == 6
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["model"]["elements"] == ["Cu", "Au"] and saved["model"]["atomic_energies"]["Cu"] == pytest.approx(3.51)
    model = load_model(out / "model.pt")
    assert model.config.avg_num_neighbors > 1.0


def test_killed_run_resumes_exactly(emt_files, tmp_path):
    straight = tmp_path / "straight"
    run_training(tiny_config(emt_files, straight, max_epochs=4), log=lambda s: None)
    resumed = tmp_path / "resumed"
    run_training(tiny_config(emt_files, resumed, max_epochs=2), log=lambda s: None)
    run_training(tiny_config(emt_files, resumed, max_epochs=4), log=lambda s: None)
    a, b = read_log(straight / "log.csv"), read_log(resumed / "log.csv")
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["valid_loss"] for r in a] == [r["valid_loss"] for r in b]
    sa = torch.load(straight / "checkpoint_last.pt", weights_only=True)
    sb = torch.load(resumed / "checkpoint_last.pt", weights_only=True)
    for key, value in sa["model"]["state_dict"].items():
        assert torch.equal(value, sb["model"]["state_dict"][key]), key


@pytest.mark.parametrize("e0s", ["isolated", "average", {"Cu": -0.5, "Au": -0.25}])
def test_e0_methods(emt_files, tmp_path, e0s):
    run_training(tiny_config(emt_files, tmp_path, max_epochs=1, E0s=e0s), log=lambda s: None)
    e0 = load_model(tmp_path / "model.pt").config.atomic_energies
    if e0s == "isolated":
        assert e0 == pytest.approx({"Cu": 3.51, "Au": 3.8})  # EMT's isolated-atom energies
    elif isinstance(e0s, dict):
        assert e0 == e0s
    else:  # least squares on the training energies: they fit the data far better than isolated atoms
        from ase.io import read

        cells = [a for a in read(emt_files / "train.xyz", ":") if a.info.get("config_type") != "IsolatedAtom"]

        def residual(e0: dict) -> float:
            errors = [a.info["REF_energy"] - sum(e0[s] for s in a.get_chemical_symbols()) for a in cells]
            return float(np.sqrt(np.mean(np.square(errors))))

        assert set(e0) == {"Cu", "Au"}
        assert residual(e0) < 0.1 * residual({"Cu": 3.51, "Au": 3.8})


def test_e0s_from_a_file_of_isolated_atoms(emt_files, tmp_path):
    from ase.io import write

    from ictp_model.cli.demo import isolated_atoms

    write(tmp_path / "iso.xyz", isolated_atoms(), format="extxyz")
    run_training(
        tiny_config(emt_files, tmp_path / "run", max_epochs=1, E0s=str(tmp_path / "iso.xyz")), log=lambda s: None
    )
    assert load_model(tmp_path / "run" / "model.pt").config.atomic_energies == pytest.approx({"Cu": 3.51, "Au": 3.8})
    write(tmp_path / "no_cu.xyz", isolated_atoms()[1:], format="extxyz")
    with pytest.raises(
        Exception, match=r"no_cu.xyz: frame -: key 'energy': no isolated-atom energy for elements \['Cu'\]"
    ):
        run_training(
            tiny_config(emt_files, tmp_path / "r2", max_epochs=1, E0s=str(tmp_path / "no_cu.xyz")), log=lambda s: None
        )


def test_yaml_and_command_line_overrides(emt_files, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump({"train_file": "x.xyz", "max_epochs": 10, "model": {"preset": "small", "channels": 8}})
    )
    overrides = parse_overrides(["--max_epochs", "3", "--model.channels", "4", "--loss.forces", "100", "--E0s", "null"])
    config = load_train_config(path, overrides)
    assert config.max_epochs == 3 and config.model == ModelConfig.from_dict({"preset": "small", "channels": 4})
    assert config.loss.forces == 100 and config.loss.energy == 1.0 and config.E0s is None


def test_unknown_keys_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_file: x.xyz\nmax_epoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown config keys \['max_epoch'\]; allowed keys: .*max_epochs"):
        load_train_config(path)
    with pytest.raises(ConfigError, match=r"loss: unknown keys \['force'\]"):
        load_train_config(None, {"train_file": "x", "loss": {"force": 1}})


def test_the_config_is_one_typed_tree_parsed_before_any_file_is_read():
    from ictp_model.model.build import build_model
    from ictp_model.training.config import LossConfig, TrainConfig

    values = {"train_file": "not-read.xyz", "model": {"preset": "rmd17", "channels": 8}, "loss": {"forces": 100}}
    config = load_train_config(None, values)
    assert isinstance(config.model, ModelConfig) and isinstance(config.loss, LossConfig)
    assert (config.model.channels, config.model.max_rank, config.model.dtype) == (8, 2, "float32")  # preset + key
    assert config.model.elements == [] and config.model_dtype == ("float32", "preset rmd17")
    assert isinstance(config.loss.forces, float) and config.loss.forces == 100.0 and config.loss.energy == 1.0
    assert TrainConfig(**yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config  # config.yaml reads back
    with pytest.raises(ValueError, match="elements: give at least one"):
        build_model(config.model)  # the data completes the model; without it there is none
