"""compile: true — the traced and compiled training step equals the eager one (float64)."""

import csv
import dataclasses
import os
import shutil

import pytest
import torch
from ase.io import write

from ictp_model import build_model
from ictp_model.cli.demo import emt_dataset, isolated_atoms
from ictp_model.model.potential import compute_properties, species_index
from ictp_model.training import compiled
from ictp_model.training.config import LossConfig, TrainConfig
from ictp_model.training.distributed import SINGLE
from ictp_model.training.evaluation import device_batch
from ictp_model.training.loss import coefficients, combine, loss_terms, term_counts
from ictp_model.training.run import prepare, run_training

from .conftest import tiny_values

needs_compiler = pytest.mark.skipif(
    not any(shutil.which(c) for c in ("g++", "c++", "clang++")), reason="inductor needs a C++ compiler"
)

# huber, sqrt_atoms and a heavy stress term: every branch of the loss is in the traced graph
LOSS = {"energy": 1.0, "forces": 1.0, "stress": 5.0, "type": "huber", "huber_delta": 0.05, "energy_mode": "sqrt_atoms"}


@pytest.fixture(scope="module")
def weighted_config(tmp_path_factory):
    """EMT Cu-Au cells with unequal structure weights (config_weight), float64."""
    folder = tmp_path_factory.mktemp("compiled")
    cells = emt_dataset(24, seed=3)
    for i, atoms in enumerate(cells):
        atoms.info["config_weight"] = 0.5 + 0.1 * (i % 7)
    write(folder / "train.xyz", isolated_atoms() + cells, format="extxyz")

    def config(**overrides) -> TrainConfig:
        values = tiny_values(folder / "train.xyz", output_dir=str(folder / "run"), loss=LOSS, dtype="float64")
        return TrainConfig(**{**values, **overrides})

    return config


def eager_step(model, batch, loss: LossConfig, counts):
    model.zero_grad(set_to_none=True)
    out = compute_properties(model, batch, forces=True, stress=True, training=True)
    total = combine({k: v for k, (v, _) in loss_terms(out, batch, loss).items()}, counts, loss)
    total.backward()
    return total, out["energy"], [p.grad for p in model.parameters()]


@needs_compiler
def test_compiled_step_equals_eager_for_every_batch_size_with_one_graph(weighted_config):
    config = weighted_config()
    data, model_config = prepare(config, lambda s: None, SINGLE)
    torch.manual_seed(0)
    model = build_model(model_config)
    messages = []
    step = compiled.CompiledStep(model, config.loss, stress=True, log=messages.append)
    reductions = [config.loss, LossConfig(**{**LOSS, "reduction": "sum"})]
    for size, reduction in [(3, reductions[0]), (5, reductions[1]), (2, reductions[0]), (4, reductions[1])]:
        batch = device_batch(data.train, list(range(size, 2 * size)), model)
        assert batch.weight is not None and batch.stress is not None
        counts = term_counts(batch, reduction)
        species = species_index(model.z_to_index, batch.numbers)
        num_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(torch.float64)
        sums, energy, gradients = step(batch, species, num_atoms, coefficients(counts, reduction))
        loss, eager_energy, eager_gradients = eager_step(model, batch, reduction, counts)
        assert float(combine(sums, counts, reduction)) == pytest.approx(float(loss.detach()), rel=1e-12, abs=1e-14)
        torch.testing.assert_close(energy, eager_energy.detach(), rtol=0, atol=1e-10)
        for mine, reference in zip(gradients, eager_gradients):
            assert (mine is None) == (reference is None)
            if mine is not None:
                torch.testing.assert_close(mine, reference, rtol=0, atol=1e-10)
    assert len(messages) == 1 and messages[0].startswith("training step compiled in")  # one graph for all sizes


@needs_compiler
def test_compiled_validation_equals_eager_for_any_weights_shift_and_dataset_values(weighted_config):
    """The validation graph has no value of the network in it: traced on one model, it evaluates
    another with different weights, energy shift, n̄ and energy scale (an EMA copy, a later epoch,
    another dataset) exactly as that model's eager path does, on every batch size."""
    config = weighted_config()
    data, model_config = prepare(config, lambda s: None, SINGLE)
    torch.manual_seed(0)
    first = build_model(model_config)
    torch.manual_seed(1)
    other_values = dict(avg_num_neighbors=model_config.avg_num_neighbors + 1.7, scale=model_config.scale * 1.3)
    second = build_model(dataclasses.replace(model_config, **other_values))
    with torch.no_grad():
        second.energy_shift += torch.arange(1.0, 1.0 + second.energy_shift.shape[0], dtype=torch.float64)
    messages = []
    predict = compiled.CompiledPrediction(first, log=messages.append)
    for model, size in [(first, 3), (second, 5), (first, 2), (second, 4)]:
        batch = device_batch(data.train, list(range(size, 2 * size)), model)
        species = species_index(model.z_to_index, batch.numbers)
        mine = predict(model, batch, species, stress=True)
        reference = compute_properties(model, batch, forces=True, stress=True)
        assert set(mine) == set(reference) == {"node_energy", "energy", "forces", "virial", "stress"}
        for key, value in reference.items():
            torch.testing.assert_close(mine[key], value.detach(), rtol=0, atol=1e-10, msg=key)
    assert messages == [m for m in messages if m.startswith("validation compiled in")] and len(messages) == 1


def read_log(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


@needs_compiler
def test_training_with_compile_true_gives_the_eager_run(weighted_config, tmp_path):
    runs = {}
    for flag in (False, True):
        out = tmp_path / f"compile-{flag}"
        messages = []
        run_training(weighted_config(compile=flag, max_epochs=2, output_dir=str(out)), log=messages.append)
        assert any(m.startswith("training step compiled in") for m in messages) == flag
        assert any(m.startswith("validation compiled in") for m in messages) == flag
        runs[flag] = read_log(out / "log.csv"), torch.load(out / "checkpoint_last.pt", weights_only=True)
    (eager_log, eager_state), (compiled_log, compiled_state) = runs[False], runs[True]
    for a, b in zip(eager_log, compiled_log):
        for key in ("train_loss", "valid_loss", "valid_forces_rmse"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-10), key
    for key, value in eager_state["model"]["state_dict"].items():
        torch.testing.assert_close(compiled_state["model"]["state_dict"][key], value, rtol=0, atol=1e-10)


def test_a_failed_compile_says_that_compile_false_works(weighted_config, tmp_path, monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no working C++ compiler found")

    monkeypatch.setattr(compiled.torch, "compile", no_compiler)
    with pytest.raises(compiled.CompileFailed, match="no working C\\+\\+ compiler.*compile: false trains"):
        run_training(weighted_config(compile=True, max_epochs=1, output_dir=str(tmp_path / "run")), log=lambda s: None)
    assert not (tmp_path / "run" / "model.pt").exists()


def test_compile_cache_puts_inductors_cache_in_the_folder_given(weighted_config, tmp_path, monkeypatch):
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from ictp_model.training.loop import make_trainer

    # restored after the test, so that later tests keep the cache they had
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", os.environ.get("TORCHINDUCTOR_CACHE_DIR", default_cache_dir()))
    config = weighted_config(compile=True, compile_cache=str(tmp_path / "inductor"))
    data, model_config = prepare(config, lambda s: None, SINGLE)
    make_trainer(build_model(model_config), config, log=lambda s: None)
    assert compiled.cache_folder() == str(tmp_path / "inductor") and (tmp_path / "inductor").is_dir()
    make_trainer(build_model(model_config), weighted_config(compile=True), log=lambda s: None)
    assert compiled.cache_folder() == str(tmp_path / "inductor")  # null leaves the folder in use as it is
