"""The training loop: plain PyTorch, importable, resumable exactly.

Each epoch shuffles with a generator seeded by (seed, epoch), so a run resumed from its last
checkpoint sees the same batches, and therefore the same losses, as an uninterrupted one.
"""

import csv
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ictp_model.data.graph import AtomicGraph, collate
from ictp_model.data.io import Sample
from ictp_model.model.io import atomic_torch_save, model_payload, save_model
from ictp_model.model.potential import compute_properties

from .config import TrainConfig
from .loss import weighted_loss
from .metrics import ErrorAccumulator

LOG_FIELDS = ["epoch", "lr", "train_loss", "valid_loss", "valid_energy_rmse", "valid_forces_rmse", "time"]


def batches(graphs: list[AtomicGraph], batch_size: int, shuffle: bool, seed: int = 0) -> Iterator[AtomicGraph]:
    """Collated batches; the order is a permutation seeded by ``seed`` when shuffling."""
    order = (
        torch.randperm(len(graphs), generator=torch.Generator().manual_seed(seed)) if shuffle else range(len(graphs))
    )
    order = list(order)
    for start in range(0, len(order), batch_size):
        yield collate([graphs[int(i)] for i in order[start : start + batch_size]])


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay only on the product-basis weights and `linear_second` (math.md §2.3)."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if ".product.weights." in name or name.endswith("linear_second") else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def evaluate(
    model: torch.nn.Module,
    graphs: list[AtomicGraph],
    samples: list[Sample],
    config: TrainConfig,
    stress: bool = False,
) -> tuple[float, ErrorAccumulator, list[dict]]:
    """Loss and errors over a data set (in order), plus the predictions per structure."""
    total, errors, predictions = 0.0, ErrorAccumulator(), []
    index = 0
    for batch in batches(graphs, config.valid_batch_size, shuffle=False):
        out = compute_properties(model, batch, forces=True, stress=stress or config.loss["stress"] > 0)
        loss, _ = weighted_loss(out, batch, config.loss)
        total += float(loss.detach())
        energy, forces = out["energy"].detach().double(), out["forces"].detach().double()
        for g in range(batch.num_graphs):
            sample = samples[index]
            atom_mask = batch.batch == g
            pred_forces = forces[atom_mask].numpy()
            force_error = None if sample.forces is None else pred_forces - sample.forces
            pred_stress = out["stress"][g].detach().double().numpy() if "stress" in out else None
            stress_error = None
            if pred_stress is not None and sample.stress is not None:
                stress_error = pred_stress - sample.stress
            errors.add(
                sample.config_type, float(energy[g]) - sample.energy, len(sample.atoms), force_error, stress_error
            )
            predictions.append({"energy": float(energy[g]), "forces": pred_forces, "stress": pred_stress})
            index += 1
    return total, errors, predictions


@dataclass
class FitState:
    """What a checkpoint restores besides the weights."""

    epoch: int = 0
    best_valid_loss: float = math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list = field(default_factory=list)


def _checkpoint(model, ema, optimizer, scheduler, state: FitState, config: TrainConfig) -> dict:
    return {
        "model": model_payload(model),
        "ema": None if ema is None else {k: v.detach().cpu() for k, v in ema.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": state.epoch,
        "best_valid_loss": state.best_valid_loss,
        "best_epoch": state.best_epoch,
        "epochs_without_improvement": state.epochs_without_improvement,
        "history": state.history,
        "train_config": config.to_dict(),
    }


def fit(
    model: torch.nn.Module,
    train: tuple[list[AtomicGraph], list[Sample]],
    valid: tuple[list[AtomicGraph], list[Sample]],
    config: TrainConfig,
    output_dir: Path,
    log: Callable[[str], None] = print,
    checkpoint: Optional[dict] = None,
) -> FitState:
    """Train with Adam(AMSGrad), ReduceLROnPlateau, EMA, gradient clipping and early stopping.

    Writes atomically into output_dir: checkpoint_last.pt (every epoch), model.pt (the best
    validation model, with EMA weights) and log.csv (one row per epoch).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    optimizer = torch.optim.Adam(decay_groups(model, config.weight_decay), lr=config.lr, amsgrad=config.amsgrad)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.lr_factor, patience=config.scheduler_patience
    )
    ema = None
    if config.ema_decay is not None:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
    state = FitState()
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"]["state_dict"])
        if ema is not None and checkpoint["ema"] is not None:
            ema.load_state_dict(checkpoint["ema"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        state = FitState(
            checkpoint["epoch"],
            checkpoint["best_valid_loss"],
            checkpoint["best_epoch"],
            checkpoint["epochs_without_improvement"],
            list(checkpoint["history"]),
        )
        log(
            f"resumed from epoch {state.epoch} (best validation loss {state.best_valid_loss:.6g} at epoch {state.best_epoch})"
        )
    train_graphs, _ = train
    valid_graphs, valid_samples = valid
    eval_model = ema.module if ema is not None else model
    started = time.perf_counter()
    progress = _progress(config, state.epoch)
    while state.epoch < config.max_epochs:
        epoch = state.epoch
        model.train()
        train_loss = 0.0
        for batch in batches(train_graphs, config.batch_size, shuffle=True, seed=config.seed * 100003 + epoch):
            optimizer.zero_grad(set_to_none=True)
            out = compute_properties(model, batch, forces=True, stress=config.loss["stress"] > 0, training=True)
            loss, _ = weighted_loss(out, batch, config.loss)
            loss.backward()
            if config.clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            train_loss += float(loss.detach())
        eval_model.eval()
        valid_loss, errors, _ = evaluate(eval_model, valid_graphs, valid_samples, config)
        scheduler.step(valid_loss)
        metrics = errors.metrics()
        state.epoch = epoch + 1
        row = {
            "epoch": state.epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "valid_loss": valid_loss,
            "valid_energy_rmse": metrics["energy_per_atom_rmse"],
            "valid_forces_rmse": metrics["forces_rmse"],
            "time": time.perf_counter() - started,
        }
        state.history.append(row)
        if valid_loss < state.best_valid_loss:
            state.best_valid_loss, state.best_epoch, state.epochs_without_improvement = valid_loss, state.epoch, 0
            save_model(eval_model, output_dir / "model.pt")
        else:
            state.epochs_without_improvement += 1
        atomic_torch_save(
            _checkpoint(model, ema, optimizer, scheduler, state, config), output_dir / "checkpoint_last.pt"
        )
        _write_log(output_dir / "log.csv", state.history)
        progress.set_postfix(
            valid_loss=f"{valid_loss:.4g}", E=f"{row['valid_energy_rmse']:.2f}", F=f"{row['valid_forces_rmse']:.1f}"
        )
        progress.update(1)
        if config.patience is not None and state.epochs_without_improvement >= config.patience:
            log(f"early stopping at epoch {state.epoch}: no improvement for {config.patience} epochs")
            break
        if config.max_time is not None and time.perf_counter() - started > config.max_time:
            log(f"stopping at epoch {state.epoch}: time budget of {config.max_time:.0f} s used")
            break
    progress.close()
    return state


def _progress(config: TrainConfig, initial: int):
    from tqdm import tqdm

    # disable=None: a progress bar on terminals only, not in logs or CI
    return tqdm(
        total=config.max_epochs, initial=initial, desc="epochs", disable=None if config.progress else True, leave=False
    )


def _write_log(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
