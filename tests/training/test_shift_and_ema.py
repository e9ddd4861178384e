"""The per-element energy shift is fitted (no constant offset survives in a saved model) and the
EMA forgets its random start within a few steps."""

import numpy as np
import pytest
import torch
from ase.io import read, write

from ictp_model.calculators.ase import ICTPCalculator
from ictp_model.training.loop import warmup_ema
from ictp_model.training.run import run_training

from .conftest import emt_files, tiny_config  # noqa: F401


def test_warmup_ema_follows_min_decay_and_the_ramp():
    update = warmup_ema(0.99)
    averaged, current = [torch.zeros(3, dtype=torch.float64)], [torch.ones(3, dtype=torch.float64)]
    update(averaged, current, torch.tensor(1))  # second update: decay (1 + 1) / (10 + 1)
    assert torch.allclose(averaged[0], torch.full((3,), 1 - 2 / 11, dtype=torch.float64))
    averaged = [torch.zeros(3, dtype=torch.float64)]
    update(averaged, current, torch.tensor(10_000))  # late: the configured decay
    assert torch.allclose(averaged[0], torch.full((3,), 0.01, dtype=torch.float64))


def _offset_errors(emt_files, folder, tmp_path, refit: bool):  # noqa: F811
    """Train 3 epochs on energies shifted by +2 eV per Cu and -1 eV per Au with E0s set to 0, so
    the whole offset must be found; return the mean signed and RMS energy errors (eV) on the
    training file."""
    frames = [a for a in read(emt_files / "train.xyz", ":") if len(a) > 1]
    for atoms in frames:
        counts = np.bincount(atoms.numbers, minlength=80)
        atoms.info["REF_energy"] += 2.0 * counts[29] - 1.0 * counts[79]
    write(tmp_path / f"shifted{refit}.xyz", frames, format="extxyz")
    config = tiny_config(emt_files, folder, max_epochs=3, E0s={"Cu": 0.0, "Au": 0.0}, refit_shift=refit,
                         loss={"energy": 1.0, "forces": 100.0, "stress": 0.0})  # fmt: skip
    config.train_file = str(tmp_path / f"shifted{refit}.xyz")
    run_training(config, log=lambda m: None)
    calc = ICTPCalculator(folder / "model.pt")
    errors = np.array([calc.get_potential_energy(a) - a.info["REF_energy"] for a in frames])
    return errors.mean(), np.sqrt(np.mean(errors**2))


def test_no_constant_energy_offset_is_left_in_the_saved_model(emt_files, tmp_path):  # noqa: F811
    mean, rmse = _offset_errors(emt_files, tmp_path / "refit", tmp_path, refit=True)
    assert abs(mean) < rmse / 3
    mean_off, rmse_off = _offset_errors(emt_files, tmp_path / "plain", tmp_path, refit=False)
    assert abs(mean_off) > rmse_off / 3  # left to the optimiser, the offset is still there
    assert rmse < rmse_off


def _normal_equation_moments(calc, frames, weight_of) -> np.ndarray:
    """Σ_g w_g n_gZ (E_ref - E) per element Z (Cu, Au): zero where the shift is the least-squares one."""
    moments = np.zeros(2)
    for atoms in frames:
        counts = np.array([np.sum(atoms.numbers == 29), np.sum(atoms.numbers == 79)], dtype=float)
        residual = atoms.info["REF_energy"] - calc.get_potential_energy(atoms)
        moments += weight_of(len(atoms)) * counts * residual
    return moments


def test_the_saved_shift_is_the_least_squares_one_on_the_sets_named(emt_files, tmp_path):  # noqa: F811
    train = [a for a in read(emt_files / "train.xyz", ":") if len(a) > 1]
    valid = read(emt_files / "test.xyz", ":")
    write(tmp_path / "train.xyz", train, format="extxyz")
    write(tmp_path / "valid.xyz", valid, format="extxyz")
    weight_of = lambda n: 1.0 / n**2  # noqa: E731  (energy_mode per_atom)
    moments = {}
    for sets in ("train", "train+valid"):
        config = tiny_config(emt_files, tmp_path / sets, max_epochs=2, final_shift_data=sets,
                             valid_file=str(tmp_path / "valid.xyz"), loss={"energy": 1.0, "forces": 10.0,
                             "stress": 0.0, "energy_mode": "per_atom"})  # fmt: skip
        config.train_file = str(tmp_path / "train.xyz")
        run_training(config, log=lambda m: None)
        calc = ICTPCalculator(tmp_path / sets / "model.pt")
        moments[sets] = (
            _normal_equation_moments(calc, train, weight_of),
            _normal_equation_moments(calc, valid, weight_of),
        )
    on_train, on_valid = moments["train"]
    assert np.allclose(on_train, 0.0, atol=1e-9) and not np.allclose(on_valid, 0.0, atol=1e-6)
    on_train, on_valid = moments["train+valid"]
    assert np.allclose(on_train + on_valid, 0.0, atol=1e-9) and not np.allclose(on_train, 0.0, atol=1e-6)


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_copies_the_element_table_instead_of_averaging_it(warmup):
    """torch's fixed-decay EMA averaged integer buffers through float32 and truncated them
    (decay 0.9: element index 3 became 2, a silently wrong species in the saved model)."""
    from torch.optim.swa_utils import AveragedModel

    from ..model.structures import small_model

    model = small_model()
    ema = AveragedModel(model, multi_avg_fn=warmup_ema(0.9, warmup=warmup), use_buffers=True)
    for _ in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        ema.update_parameters(model)
    assert torch.equal(ema.module.z_to_index, model.z_to_index)
    weight = next(model.parameters())
    averaged = next(ema.module.parameters())
    assert not torch.equal(averaged, weight) and averaged.dtype == weight.dtype
