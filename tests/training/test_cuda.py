"""Training on a CUDA GPU follows the CPU run (float64: the same losses every epoch, to round-off)
and writes files a CPU-only machine reads: the model and checkpoint hold CPU tensors.

Skipped where torch sees no GPU (CI); run on a GPU machine (README, "GPUs")."""

import csv

import pytest
import torch

from ictp_model import load_model
from ictp_model.training.run import run_training

from .conftest import tiny_config


def losses(folder) -> list[tuple[float, float]]:
    with open(folder / "log.csv") as handle:
        return [(float(r["train_loss"]), float(r["valid_loss"])) for r in csv.DictReader(handle)]


def tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from tensors(v)


def test_training_on_the_gpu_follows_the_cpu_and_writes_cpu_files(emt_files, cuda, tmp_path):
    for device in ("cpu", cuda):
        run_training(
            tiny_config(emt_files, tmp_path / device, max_epochs=3, device=device, dtype="float64"), log=lambda s: None
        )
    want, got = losses(tmp_path / "cpu"), losses(tmp_path / cuda)
    assert len(got) == len(want) == 3
    for (train, valid), (train_cpu, valid_cpu) in zip(got, want):
        assert train == pytest.approx(train_cpu, rel=1e-8)
        assert valid == pytest.approx(valid_cpu, rel=1e-8)
    for name in ("model.pt", "checkpoint_last.pt"):
        payload = torch.load(tmp_path / cuda / name, weights_only=True)  # no map_location: as a CPU machine
        devices = {t.device.type for t in tensors(payload)}
        assert devices == {"cpu"}, f"{name} holds tensors on {devices}"
    cpu_model, gpu_model = load_model(tmp_path / "cpu" / "model.pt"), load_model(tmp_path / cuda / "model.pt")
    for (key, value), other in zip(cpu_model.state_dict().items(), gpu_model.state_dict().values()):
        torch.testing.assert_close(other, value, rtol=1e-7, atol=1e-9, msg=key)
