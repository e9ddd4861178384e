"""What keeps a training run honest: a second experiment never continues the first, typed and
range-checked config values, one rule for the precision, clear errors for broken checkpoints and
missing CUDA, shareable files, and a per-epoch line where people look."""

import dataclasses
import os
import stat

import pytest
import torch
import yaml
from ase.io import read, write

from ictp_model.cli.main import main
from ictp_model.training.config import ConfigError, TrainConfig, load_train_config, parse_overrides
from ictp_model.training.provenance import Existing
from ictp_model.training.run import run_training

from .conftest import emt_files, tiny_config, tiny_values  # noqa: F401


def _train(config, existing=Existing.CHECK, lines=None):
    return run_training(config, log=(lines.append if lines is not None else lambda m: None), existing=existing)


@pytest.fixture(scope="module")
def finished(emt_files, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("finished")
    _train(tiny_config(emt_files, out, max_epochs=2))
    return out


def test_a_different_run_into_the_same_folder_is_refused_before_anything_is_written(emt_files, finished, tmp_path):  # noqa: F811
    before = {p.name: p.read_bytes() for p in finished.iterdir()}
    for change in ({"lr": 0.002}, {"model": {"preset": "small", "channels": 5, "radial_mlp": [8], "cutoff": 3.5}}):
        with pytest.raises(ConfigError, match="holds a different run") as info:
            _train(tiny_config(emt_files, finished, max_epochs=2, **change))
        assert "--restart" in str(info.value) and "--resume" in str(info.value)
    with pytest.raises(ConfigError, match=r"lr: 0.01 -> 0.002"):
        _train(tiny_config(emt_files, finished, lr=0.002))
    # other data under the same name
    frames = read(emt_files / "train.xyz", ":")
    frames[3].info["REF_energy"] += 0.1
    copy = tmp_path / "train.xyz"
    write(copy, frames, format="extxyz")
    changed = tiny_config(emt_files, finished, max_epochs=2)
    changed.train_file = str(copy)
    with pytest.raises(ConfigError, match="train_file"):
        _train(changed)
    assert {p.name: p.read_bytes() for p in finished.iterdir()} == before


def test_the_same_run_resumes_and_a_longer_budget_continues(emt_files, finished, tmp_path):  # noqa: F811
    folder = tmp_path / "run"
    _train(tiny_config(emt_files, folder, max_epochs=2))
    lines: list[str] = []
    _train(tiny_config(emt_files, folder, max_epochs=3), lines=lines)  # more epochs: the same run
    assert any("resumed from epoch 2" in line for line in lines)
    log = (folder / "log.csv").read_text().splitlines()
    assert len(log) == 1 + 3


def test_restart_replaces_the_old_run_and_resume_forces_continuing(emt_files, tmp_path):  # noqa: F811
    folder = tmp_path / "run"
    _train(tiny_config(emt_files, folder, max_epochs=3))
    old_model = (folder / "model.pt").read_bytes()
    lines: list[str] = []
    _train(tiny_config(emt_files, folder, max_epochs=2, lr=0.003), Existing.RESTART, lines)
    assert any("--restart" in line for line in lines)
    assert (folder / "model.pt").read_bytes() != old_model
    assert len((folder / "log.csv").read_text().splitlines()) == 1 + 2
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    assert saved["lr"] == 0.003
    lines = []
    _train(tiny_config(emt_files, folder, max_epochs=3, lr=0.004), Existing.RESUME, lines)
    assert any("resumed from epoch 2" in line for line in lines)
    assert any("lr: 0.003 -> 0.004" in line for line in lines)


def test_a_folder_with_a_run_but_no_checkpoint_is_not_overwritten(emt_files, tmp_path):  # noqa: F811
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "model.pt").write_bytes(b"someone's model")
    with pytest.raises(ConfigError, match="without a checkpoint"):
        _train(tiny_config(emt_files, folder))
    assert (folder / "model.pt").read_bytes() == b"someone's model"


def test_truncated_and_foreign_checkpoints_name_the_file_and_the_way_out(emt_files, finished, tmp_path):  # noqa: F811
    folder = tmp_path / "run"
    folder.mkdir()
    good = (finished / "checkpoint_last.pt").read_bytes()
    (folder / "checkpoint_last.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(ConfigError, match=r"checkpoint_last.pt: cannot read the checkpoint .*--restart"):
        _train(tiny_config(emt_files, folder))
    torch.save({"weights": torch.zeros(2)}, folder / "checkpoint_last.pt")
    with pytest.raises(ConfigError, match=r"checkpoint_last.pt: not an ictp training checkpoint.*--restart"):
        _train(tiny_config(emt_files, folder))


def test_cli_restart_and_resume_flags(emt_files, finished, capsys):  # noqa: F811
    args = ["train", *sum(([f"--{k}", yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()]
                           for k, v in tiny_values(emt_files / "train.xyz", max_epochs=2).items()), [])]  # fmt: skip
    args += ["--output_dir", str(finished), "--lr", "0.005"]
    assert main(args) == 2
    assert "holds a different run" in capsys.readouterr().err
    assert main([*args, "--restart", "--resume"]) == 2
    assert "contradict" in capsys.readouterr().err


@pytest.mark.parametrize(
    "values, message",
    [
        ({"channels": "eight"}, "model.channels: expected a whole number, got 'eight'"),
        ({"valid_size": -3}, "valid_size: must be >= 1, got -3"),
        ({"train_size": -5}, "train_size: must be >= 1, got -5"),
        ({"loss": {"forces": -1.0}}, "loss.forces: must be >= 0, got -1.0"),
        ({"loss": {"energy": "a lot"}}, "loss.energy: expected a number, got 'a lot'"),
        ({"max_epochs": "2"}, "max_epochs: expected a whole number, got '2'"),
        ({"lr": 0}, "lr: must be > 0, got 0.0"),
        ({"ema_decay": 1.5}, "ema_decay: must be in [0, 1), got 1.5"),
        ({"batch_size": 2.5}, "batch_size: expected a whole number, got 2.5"),
        ({"amsgrad": "yes please"}, "amsgrad: expected true or false, got 'yes please'"),
        ({"loss": {"energy": 0.0, "forces": 0.0, "stress": 0.0}}, "at least one of energy, forces, stress"),
        (
            {"dtype": "float64", "model": {"preset": "small", "dtype": "float32"}},
            "dtype: 'float64' contradicts model.dtype",
        ),
    ],
)
def test_config_values_are_typed_and_range_checked_with_the_key_named(tmp_path, values, message):
    if "channels" in values:
        values = {"model": {"preset": "small", **values}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"train_file": "does-not-exist.xyz", **values}))
    with pytest.raises(ConfigError) as info:
        load_train_config(tmp_path / "c.yaml")
    assert message in str(info.value)


def test_exponent_floats_are_numbers_in_yaml_and_on_the_command_line(tmp_path):
    (tmp_path / "c.yaml").write_text("train_file: t.xyz\nlr: 1e-3\nweight_decay: 5E-7\n")
    config = load_train_config(tmp_path / "c.yaml", parse_overrides(["--clip_grad", "1e2"]))
    assert (config.lr, config.weight_decay, config.clip_grad) == (1e-3, 5e-7, 100.0)
    assert isinstance(load_train_config(None, {"train_file": "t", "max_epochs": 3}).max_epochs, int)


def test_one_rule_for_the_precision_and_it_is_logged(emt_files, tmp_path):  # noqa: F811
    base = {"train_file": "t.xyz"}
    assert TrainConfig(**base, model="rmd17").model_dtype == ("float32", "preset rmd17")
    assert TrainConfig(**base, model="rmd17", dtype="float64").model_dtype == ("float64", "dtype")
    assert TrainConfig(**base, model={"preset": "rmd17", "dtype": "float64"}).model_dtype == ("float64", "model.dtype")
    assert TrainConfig(**base, model={"channels": 4}).model_dtype == ("float64", "default")
    lines: list[str] = []
    config = tiny_config(emt_files, tmp_path / "run", max_epochs=1, dtype=None)
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, dtype="float32"))
    _train(config, lines=lines)
    assert any("float32 (from model.dtype)" in line for line in lines)
    assert torch.load(tmp_path / "run" / "model.pt", weights_only=True)["config"]["dtype"] == "float32"


def test_cuda_without_cuda_is_refused_before_data_is_read(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--train_file", str(tmp_path / "missing.xyz"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    for command in (
        ["eval", "--model", "m.pt", "--data", "d.xyz"],
        ["md", "--model", "m.pt", "--structure", "s.xyz", "--out", "o.xyz"],
    ):
        assert main([*command, "--device", "cuda"]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_outputs_honour_the_umask(emt_files, tmp_path):  # noqa: F811
    old = os.umask(0o022)
    try:
        folder = tmp_path / "run"
        _train(tiny_config(emt_files, folder, max_epochs=1))
        from ictp_export import export_model

        export_model(folder / "model.pt", folder / "model-lammps.pt")
    finally:
        os.umask(old)
    written = [p for p in folder.iterdir() if p.is_file()]
    assert {"model.pt", "checkpoint_last.pt", "metrics.json", "log.csv", "model-lammps.pt"} <= {p.name for p in written}
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


def test_a_line_per_epoch_in_train_log_and_on_stdout_when_not_a_terminal(emt_files, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "run"
    values = tiny_values(emt_files / "train.xyz", max_epochs=2, progress=True, output_dir=str(folder))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out  # captured: not a terminal, so no bar and the lines instead
    for text in (out, (folder / "train.log").read_text()):
        assert "epoch 1/2: train_loss" in text and "epoch 2/2: train_loss" in text
        assert "F_rmse" in text and " lr " in text


def test_train_help_lists_the_keys_their_defaults_and_the_presets(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for text in (
        "max_epochs           100",
        "lr                   0.01",
        "--restart",
        "rmd17",
        "channels=256",
        "forces               10.0",
    ):
        assert text in out


def test_checkpoints_of_the_previous_weight_format_are_not_resumed(emt_files, tmp_path):  # noqa: F811
    folder = tmp_path / "run"
    _train(tiny_config(emt_files, folder, max_epochs=1))
    checkpoint = torch.load(folder / "checkpoint_last.pt", weights_only=True)
    checkpoint["model"]["format_version"] = 1
    torch.save(checkpoint, folder / "checkpoint_last.pt")
    with pytest.raises(ConfigError, match="format version 1.*--restart"):
        _train(tiny_config(emt_files, folder, max_epochs=2), Existing.RESUME)


def test_a_diverging_run_stops_with_an_error_and_keeps_its_last_finite_state(emt_files, tmp_path, capsys):  # noqa: F811
    folder = tmp_path / "run"
    values = tiny_values(emt_files / "train.xyz", max_epochs=3, lr=1e30, clip_grad=None, output_dir=str(folder))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(values))
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "training diverged in epoch" in err and "Lower lr" in err
    if (folder / "checkpoint_last.pt").exists():  # only finite epochs were written
        state = torch.load(folder / "checkpoint_last.pt", weights_only=True)["model"]["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
