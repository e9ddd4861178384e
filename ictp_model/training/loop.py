"""The training loop: plain PyTorch, importable, resumable exactly.

Each epoch shuffles with a generator seeded by (seed, epoch), so a run resumed from its last
checkpoint sees the same batches, and therefore the same losses, as an uninterrupted one.
"""

import csv
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch.optim.swa_utils import AveragedModel

from ictp_model.data.dataset import GraphDataset
from ictp_model.files import atomic_text, atomic_torch_save
from ictp_model.model.io import model_payload, model_state, save_model
from ictp_model.model.potential import compute_properties, species_index

from .compiled import CompiledPrediction, CompiledStep, use_cache_folder
from .config import TrainConfig
from .distributed import (
    SINGLE,
    Ranks,
    all_reduce_sum,
    any_rank,
    broadcast_parameters,
    part,
    sum_gradients,
)
from .evaluation import device_batch, evaluate
from .loss import LOSS_TERMS, coefficients, combine, term_counts, term_sums
from .shift import ShiftFit, apply_shift


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; raised before anything of that epoch is written."""


LOG_FIELDS = ["epoch", "lr", "train_loss", "valid_loss", "valid_energy_rmse", "valid_forces_rmse", "time"]


def epoch_batches(n: int, batch_size: int, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Indices of each batch; the order is a permutation seeded by ``seed`` when shuffling."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist() if shuffle else list(range(n))
    return [order[start : start + batch_size] for start in range(0, n, batch_size)]


def warmup_ema(decay: float, warmup: bool = True):
    """EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)) after n updates (MACE's, from
    torch_ema): early averages forget the random initial weights within a few steps instead of
    keeping 41 % of them after the first epoch of 90 steps.  warmup=False: the fixed decay.
    Integer buffers (the element table) are copied, never averaged: torch's own EMA rounds them
    through float32 and truncates (decay 0.9 turned index 3 into 2)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        n = float(num_averaged)
        weight = 1.0 - (min(decay, (1.0 + n) / (10.0 + n)) if warmup else decay)
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, weight)
        else:
            for a, c in zip(averaged, current):
                a.copy_(c)

    return update


def refits_shift(config: TrainConfig) -> bool:
    return config.refit_shift and config.loss.energy > 0


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay only on the product-basis weights and `linear_second` (docs/math.md §2.3)."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        (decay if ".product.weights." in name or name.endswith("linear_second") else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


@dataclass
class FitState:
    """What a checkpoint restores besides the weights."""

    epoch: int = 0
    best_valid_loss: float = math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    history: list = field(default_factory=list)


def _checkpoint(model, ema, optimizer, scheduler, state: FitState, config: TrainConfig, fingerprint) -> dict:
    return {
        "fingerprint": fingerprint,
        "model": model_payload(model),
        "ema": None if ema is None else {k: v.detach().cpu() for k, v in ema.state_dict().items()},
        "optimizer": on_cpu(optimizer.state_dict()),  # a CPU-only machine reads a GPU run's checkpoint
        "scheduler": scheduler.state_dict(),
        "epoch": state.epoch,
        "best_valid_loss": state.best_valid_loss,
        "best_epoch": state.best_epoch,
        "epochs_without_improvement": state.epochs_without_improvement,
        "history": state.history,
        "train_config": config.to_dict(),
    }


def on_cpu(value):
    """``value`` (nested dicts, lists and tuples) with every tensor moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(on_cpu(v) for v in value)
    return value


@dataclass
class Trainer:
    """What one training run updates: the model, its EMA copy, optimiser, schedule and shift fit."""

    model: torch.nn.Module
    ema: Optional[AveragedModel]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.ReduceLROnPlateau
    shift: Optional[ShiftFit]
    step: Optional[CompiledStep] = None  # compile: true
    predict: Optional[CompiledPrediction] = None  # compile: true, for validation

    @property
    def eval_model(self) -> torch.nn.Module:
        return self.ema.module if self.ema is not None else self.model

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]


def make_trainer(model: torch.nn.Module, config: TrainConfig, log: Callable[[str], None] = print) -> Trainer:
    optimizer = torch.optim.Adam(decay_groups(model, config.weight_decay), lr=config.lr, amsgrad=config.amsgrad)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=config.lr_factor, patience=config.scheduler_patience
    )
    ema = None
    if config.ema_decay is not None:
        average = warmup_ema(config.ema_decay, warmup=config.ema_warmup)
        ema = AveragedModel(model, multi_avg_fn=average, use_buffers=True)
    shift = ShiftFit(len(model.config.elements), config.loss.energy_mode) if refits_shift(config) else None
    if not config.compile:
        return Trainer(model, ema, optimizer, scheduler, shift)
    use_cache_folder(config.compile_cache)
    step, predict = CompiledStep(model, config.loss, config.loss.stress > 0, log), CompiledPrediction(model, log)
    return Trainer(model, ema, optimizer, scheduler, shift, step, predict)


def resume(trainer: Trainer, checkpoint: dict, log: Callable[[str], None]) -> FitState:
    """Load a checkpoint's weights, EMA, optimiser and schedule; returns where the run stood."""
    trainer.model.load_state_dict(model_state(checkpoint["model"]))
    if trainer.ema is not None and checkpoint["ema"] is not None:
        trainer.ema.load_state_dict(checkpoint["ema"])
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    trainer.scheduler.load_state_dict(checkpoint["scheduler"])
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
    return state


def train_epoch(trainer: Trainer, train: GraphDataset, config: TrainConfig, epoch: int, ranks: Ranks) -> float:
    """One pass over the training set (then the shift refit); returns the training loss."""
    model, parameters = trainer.model, list(trainer.model.parameters())
    model.train()
    train_loss = 0.0
    steps = epoch_batches(len(train), config.batch_size, shuffle=True, seed=config.seed * 100003 + epoch)
    for indices in steps:
        trainer.optimizer.zero_grad(set_to_none=True)
        loss = _train_step(trainer, train, part(indices, ranks), config, ranks)
        if loss is not None:
            train_loss += loss
        sum_gradients(parameters, ranks)
        if config.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(parameters, config.clip_grad)
        trainer.optimizer.step()
        if trainer.ema is not None:
            trainer.ema.update_parameters(model)
    if trainer.shift is not None:  # the offset fitted, not left to the optimiser (see .shift)
        apply_shift([model] + ([trainer.ema.module] if trainer.ema is not None else []), trainer.shift.solve(ranks))
        trainer.shift.reset()
    train_loss = float(all_reduce_sum(torch.tensor([train_loss], dtype=torch.float64), ranks))
    if config.loss.reduction == "mean":  # the mean over batches, comparable with valid_loss
        train_loss /= max(len(steps), 1)
    return train_loss


def record_epoch(
    trainer: Trainer,
    state: FitState,
    row: dict,
    config: TrainConfig,
    output_dir: Path,
    ranks: Ranks,
    fingerprint: Optional[dict],
) -> None:
    """Append the epoch's row; save the best model, the checkpoint and log.csv (rank 0)."""
    state.history.append(row)
    if row["valid_loss"] < state.best_valid_loss:
        state.best_valid_loss, state.best_epoch, state.epochs_without_improvement = row["valid_loss"], state.epoch, 0
        if ranks.is_main:
            save_model(trainer.eval_model, output_dir / "model.pt")
    else:
        state.epochs_without_improvement += 1
    if ranks.is_main:
        checkpoint = _checkpoint(
            trainer.model, trainer.ema, trainer.optimizer, trainer.scheduler, state, config, fingerprint
        )
        atomic_torch_save(checkpoint, output_dir / "checkpoint_last.pt")
        _write_log(output_dir / "log.csv", state.history)


def stop_reason(state: FitState, config: TrainConfig, started: float, ranks: Ranks) -> Optional[str]:
    """Why training stops after this epoch, if it does.  valid_loss is identical on every rank, so
    patience agrees; clocks do not, so the time budget is a collective decision."""
    if config.patience is not None and state.epochs_without_improvement >= config.patience:
        return f"early stopping at epoch {state.epoch}: no improvement for {config.patience} epochs"
    out_of_time = config.max_time is not None and time.perf_counter() - started > config.max_time
    if any_rank(out_of_time, ranks):
        return f"stopping at epoch {state.epoch}: time budget of {config.max_time:.0f} s used"
    return None


def fit(
    model: torch.nn.Module,
    train: GraphDataset,
    valid: GraphDataset,
    config: TrainConfig,
    output_dir: Path,
    log: Callable[[str], None] = print,
    checkpoint: Optional[dict] = None,
    ranks: Ranks = SINGLE,
    fingerprint: Optional[dict] = None,
) -> FitState:
    """Train with Adam(AMSGrad), ReduceLROnPlateau, EMA, gradient clipping and early stopping.

    Writes atomically into output_dir (rank 0 only): checkpoint_last.pt (every epoch), model.pt
    (the best validation model, with EMA weights) and log.csv (one row per epoch).

    Distributed: each global batch of config.batch_size structures is split over the ranks, the
    gradients are summed, and every decision (LR schedule, early stop, time budget) is taken from
    reduced values or collectively, so all ranks stay in step and none waits forever.
    """
    if ranks.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    broadcast_parameters(model, ranks)
    trainer = make_trainer(model, config, log)
    state = resume(trainer, checkpoint, log) if checkpoint is not None else FitState()
    started = time.perf_counter()
    progress = _progress(config, state.epoch, ranks)
    while state.epoch < config.max_epochs:
        epoch = state.epoch
        train_loss = train_epoch(trainer, train, config, epoch, ranks)
        trainer.eval_model.eval()
        valid_loss, errors, _ = evaluate(
            trainer.eval_model, valid, config.loss, config.valid_batch_size, ranks=ranks, compiled=trainer.predict
        )
        check_finite(train_loss, valid_loss, state, trainer.lr, output_dir)
        trainer.scheduler.step(valid_loss)
        metrics = errors.metrics()
        state.epoch = epoch + 1
        row = {
            "epoch": state.epoch,
            "lr": trainer.lr,
            "train_loss": train_loss,
            "valid_loss": valid_loss,
            "valid_energy_rmse": metrics["energy_per_atom_rmse"],
            "valid_forces_rmse": metrics["forces_rmse"],
            "time": time.perf_counter() - started,
        }
        record_epoch(trainer, state, row, config, output_dir, ranks, fingerprint)
        progress.set_postfix(
            valid_loss=f"{valid_loss:.4g}", E=f"{row['valid_energy_rmse']:.2f}", F=f"{row['valid_forces_rmse']:.1f}"
        )
        progress.update(1)
        line = epoch_line(row, config.max_epochs, state.best_epoch == state.epoch)
        # on a terminal the bar shows progress and the line goes to train.log only
        (log if progress.disable else getattr(log, "file_only", _ignore))(line)
        reason = stop_reason(state, config, started, ranks)
        if reason is not None:
            log(reason)
            break
    progress.close()
    return state


def check_finite(train_loss: float, valid_loss: float, state: FitState, lr: float, output_dir: Path) -> None:
    """Stop before a diverged epoch is saved (the losses are the same on every rank)."""
    if not (math.isfinite(train_loss) and math.isfinite(valid_loss)):
        raise TrainingDiverged(
            f"training diverged in epoch {state.epoch + 1} (train loss {train_loss}, validation loss {valid_loss}); "
            f"nothing of this epoch was saved: {output_dir / 'checkpoint_last.pt'} and model.pt hold epochs "
            f"{state.epoch} and {state.best_epoch}. Lower lr (now {lr:.3g}) or clip_grad and start over with --restart"
        )


def _ignore(message: str) -> None:
    pass


def epoch_line(row: dict, max_epochs: int, best: bool) -> str:
    """One line per epoch, for logs and for stdout when it is not a terminal (nohup, SLURM)."""
    return (
        f"epoch {row['epoch']}/{max_epochs}: train_loss {row['train_loss']:.5g}  valid_loss {row['valid_loss']:.5g}"
        f"{' (best)' if best else ''}  E_rmse {row['valid_energy_rmse']:.3f} meV/atom  F_rmse {row['valid_forces_rmse']:.2f} meV/A"
        f"  lr {row['lr']:.3g}  {row['time']:.1f} s"
    )


def _train_step(trainer: Trainer, dataset: GraphDataset, indices: list[int], config: TrainConfig, ranks: Ranks):
    """This rank's share of one global batch: the gradients of its loss left in .grad, the loss
    returned (None without structures).  A mean divides by the counts of the whole global batch,
    so the shares add up to the single-process loss.  The energy residuals go into trainer.shift."""
    model = trainer.model
    batch = device_batch(dataset, indices, model) if indices else None
    counts = _global_counts(term_counts(batch, config.loss) if batch is not None else {}, config, ranks)
    if batch is None or not counts:  # no structures, or no labels the loss weighs
        return None
    species = species_index(model.z_to_index, batch.numbers)
    num_atoms = torch.bincount(batch.batch, minlength=batch.num_graphs).to(batch.positions.dtype)
    if trainer.step is not None:
        sums, energy, gradients = trainer.step(batch, species, num_atoms, coefficients(counts, config.loss))
        for parameter, gradient in zip(model.parameters(), gradients):
            parameter.grad = gradient
        loss = combine(sums, counts, config.loss)
    else:
        stress = config.loss.stress > 0
        out = compute_properties(model, batch, forces=True, stress=stress, training=True, species=species)
        energy = out["energy"]
        loss = combine(term_sums(out, batch, config.loss, num_atoms), counts, config.loss)
        loss.backward()
    if trainer.shift is not None:
        trainer.shift.add(batch, species, energy)
    return float(loss.detach())


def _global_counts(counts: dict[str, torch.Tensor], config: TrainConfig, ranks: Ranks) -> dict[str, torch.Tensor]:
    """The counts a mean divides by, summed over the ranks (a collective: every rank calls it)."""
    if not (ranks.distributed and config.loss.reduction == "mean"):
        return counts
    local = torch.tensor([float(counts[t]) if t in counts else 0.0 for t in LOSS_TERMS], dtype=torch.float64)
    total = all_reduce_sum(local, ranks)
    return {t: total[i].to(counts[t]) if t in counts else total[i] for i, t in enumerate(LOSS_TERMS)}


def _progress(config: TrainConfig, initial: int, ranks: Ranks):
    from tqdm import tqdm

    # disable=None: a progress bar on terminals only, not in logs or CI
    return tqdm(
        total=config.max_epochs,
        initial=initial,
        desc="epochs",
        disable=None if config.progress and ranks.is_main else True,
        leave=False,
    )


def _write_log(path: Path, rows: list[dict]) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_text(path, text.getvalue())
