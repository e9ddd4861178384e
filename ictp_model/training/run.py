"""`ictp train` as a library call: read and split data, compute statistics, build the model, fit,
evaluate the best model and write the outputs."""

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import yaml

from ictp_model.data.dataset import GraphDataset, InMemoryDataset
from ictp_model.data.graph import collate
from ictp_model.data.io import DataError, Keys, Sample, label_summary, read_samples
from ictp_model.data.preprocess import is_preprocessed, read_statistics
from ictp_model.data.shards import ShardedDataset
from ictp_model.data.statistics import (
    RunningStatistics,
    check_elements,
    check_symbols,
    e0s_from_isolated_atoms,
    elements_in,
)
from ictp_model.device import check_device
from ictp_model.files import atomic_text
from ictp_model.model.build import build_model
from ictp_model.model.config import ModelConfig
from ictp_model.model.io import load_model, save_model, saved_config
from ictp_model.model.potential import compute_properties, species_index

from .config import ConfigError, TrainConfig
from .distributed import SINGLE, Ranks, barrier, broadcast, part
from .evaluation import evaluate
from .loop import fit, refits_shift
from .metrics import format_table
from .provenance import Existing, decide_start, remove_run_files
from .runlog import RunLog
from .shift import ShiftFit, apply_shift


@dataclass
class DataSplits:
    train: list[Sample]
    valid: list[Sample]
    test: list[Sample]
    isolated: list[Sample]


def load_splits(config: TrainConfig) -> DataSplits:
    """Read the files and split with a permutation seeded by ``config.seed``."""
    keys = Keys(config.energy_key, config.forces_key, config.stress_key, config.virials_key, config.weight_key)
    samples = read_samples(config.train_file, keys)
    isolated = [s for s in samples if s.is_isolated_atom]
    samples = [s for s in samples if not s.is_isolated_atom]
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(samples))
    if config.valid_file:
        valid = read_samples(config.valid_file, keys)
        train_idx = order
    else:
        n_valid = (
            config.valid_size
            if config.valid_size is not None
            else max(1, int(round(config.valid_fraction * len(samples))))
        )
        if n_valid >= len(samples):
            raise DataError.at(config.train_file, f"{len(samples)} structures cannot give {n_valid} for validation")
        valid = [samples[i] for i in order[:n_valid]]
        train_idx = order[n_valid:]
    if config.train_size is not None:
        if config.train_size > len(train_idx):
            raise DataError.at(config.train_file, f"train_size {config.train_size} > {len(train_idx)} available")
        train_idx = train_idx[: config.train_size]
    train = [samples[i] for i in train_idx]
    test = read_samples(config.test_file, keys) if config.test_file else []
    return DataSplits(train, valid, test, isolated)


def resolve_e0s(
    config: TrainConfig, stats: RunningStatistics, isolated: list[Sample], elements: list[str]
) -> dict[str, float]:
    """E0s by the configured method; every element of the model gets a value."""
    source = config.E0s
    if source is None:
        return {e: 0.0 for e in elements}
    if isinstance(source, dict):
        missing = sorted(set(elements) - set(source))
        if missing:
            raise ConfigError(f"E0s: no value for elements {missing}")
        return {e: float(source[e]) for e in elements}
    if source == "average":
        return stats.e0s(elements)
    keys = Keys(energy=config.energy_key)
    found = e0s_from_isolated_atoms(
        isolated if source == "isolated" else read_samples(source, keys, require_forces=False)
    )
    missing = sorted(set(elements) - set(found))
    if missing:
        where = f"{config.train_file} (config_type=IsolatedAtom)" if source == "isolated" else source
        raise DataError.at(where, f"no isolated-atom energy for elements {missing}", key="energy")
    return {e: found[e] for e in elements}


@dataclass
class PreparedData:
    """Data sets and the statistics every rank shares."""

    train: GraphDataset
    valid: GraphDataset
    test: Callable[[], Optional[GraphDataset]]  # built when needed
    elements: list[str]
    atomic_energies: dict[str, float]
    avg_num_neighbors: float
    scale: float


def _in_memory_data(config: TrainConfig, ranks: Ranks, log: Callable[[str], None]) -> PreparedData:
    """Every rank reads the files (each epoch's batches draw from all of them); the statistics
    are computed on rank 0 and shared."""
    splits = load_splits(config)
    for name, subset in (("train", splits.train), ("valid", splits.valid), ("test", splits.test)):
        if subset:
            log(f"labels ({name}): {label_summary(subset)}")
    elements = config.model.elements or elements_in(splits.train + splits.valid + splits.test)
    for subset in (splits.train, splits.valid, splits.test):
        check_elements(subset, elements)
    cutoff, dtype = config.model.cutoff, config.model.torch_dtype
    train = InMemoryDataset.from_samples(splits.train, cutoff, dtype)
    statistics = None
    if ranks.is_main:
        stats = RunningStatistics()
        for sample, graph in zip(splits.train, train.graphs):
            stats.add(sample, graph.num_edges)
        statistics = (
            resolve_e0s(config, stats, splits.isolated, elements),
            stats.avg_num_neighbors(),
            stats.force_rms(),
        )
    e0s, avg, scale = broadcast(statistics, ranks)
    return PreparedData(
        train,
        InMemoryDataset.from_samples(splits.valid, cutoff, dtype),
        lambda: InMemoryDataset.from_samples(splits.test, cutoff, dtype) if splits.test else None,
        elements, e0s, avg, scale,
    )  # fmt: skip


def _sharded_data(config: TrainConfig) -> PreparedData:
    """Data preprocessed by `ictp preprocess`: streamed from its shards, statistics from its sidecar."""
    folder = Path(config.train_file)
    stats = read_statistics(folder)
    elements = config.model.elements or stats["elements"]
    cutoff, dtype = config.model.cutoff, config.model.torch_dtype
    if abs(cutoff - stats["cutoff"]) > 1e-12:
        raise ConfigError(
            f"model.cutoff {cutoff} differs from the cutoff {stats['cutoff']} that {folder} was preprocessed "
            "with (its average neighbour count depends on it); preprocess again or set model.cutoff"
        )
    if config.train_size is not None:
        raise ConfigError("train_size: give it to 'ictp preprocess'; a preprocessed training set is used whole")
    check_symbols(stats["elements"], elements, folder)

    def open_set(name: str, fallback: Optional[str]) -> Optional[GraphDataset]:
        # the folder's own valid/test shards were made from the same config keys; a file is
        # used only where the folder has none
        if stats["counts"].get(name):
            return ShardedDataset(folder / name, cutoff, dtype)
        return open_dataset(fallback, config, cutoff, dtype) if fallback else None

    e0s = stats["atomic_energies"]
    if isinstance(config.E0s, dict):
        e0s = resolve_e0s(config, RunningStatistics(), [], elements)
    return PreparedData(
        open_set("train", None),
        open_set("valid", config.valid_file),
        lambda: open_set("test", config.test_file),
        elements, {e: float(e0s.get(e, 0.0)) for e in elements}, float(stats["avg_num_neighbors"]),
        float(stats["scale"]),
    )  # fmt: skip


def open_dataset(location: str, config: TrainConfig, cutoff: float, dtype: torch.dtype) -> GraphDataset:
    """HDF5 shards (a folder or an .h5 file) streamed, any other file read into memory."""
    if Path(location).is_dir() or Path(location).suffix == ".h5":
        return ShardedDataset(location, cutoff, dtype)
    keys = Keys(config.energy_key, config.forces_key, config.stress_key, config.virials_key, config.weight_key)
    return InMemoryDataset.from_samples(read_samples(location, keys), cutoff, dtype)


def run_training(
    config: TrainConfig,
    log: Callable[[str], None] = print,
    ranks: Ranks = SINGLE,
    existing: Existing = Existing.CHECK,
) -> dict:
    """Train a model as configured; returns the final metrics. All validation happens before the
    first file is written, so a failing run leaves an existing output folder untouched.

    existing: what to do when output_dir already holds a run (see provenance.Existing): by
    default the same run (same config and data) is resumed and a different one is refused.

    Distributed (ranks from `distributed.init`): statistics come from rank 0, every rank trains on
    its part of each batch, only rank 0 writes files and logs."""
    config.device = check_device(config.device)
    if not ranks.is_main:
        log = _silent
    start = decide_start(config, existing)
    torch.manual_seed(config.seed)
    data, model_config = prepare(config, log, ranks)
    if start.checkpoint is not None:
        model_config = saved_config(start.checkpoint["model"])
        if start.changes:
            log("continuing the run in the output folder despite (--resume):\n  " + "\n  ".join(start.changes))
    model = build_model(model_config).to(config.device)
    dtype, source = config.model_dtype if start.checkpoint is None else (model_config.dtype, "the checkpoint")
    log(
        f"model: {model_config.variant}, {model_config.storage}, C={model_config.channels}, L={model_config.max_rank}, "
        f"l_max={model_config.edge_rank}, nu={model_config.correlation}, {dtype} (from {source}), "
        f"{sum(p.numel() for p in model.parameters())} parameters, device {config.device}"
    )
    output_dir = Path(config.output_dir)
    if ranks.is_main:
        if start.replace:
            remove_run_files(output_dir)
            log(f"--restart: the previous run in {output_dir} is replaced")
        atomic_text(
            output_dir / "config.yaml",
            yaml.safe_dump({**config.to_dict(), "model": model_config.to_dict()}, sort_keys=False),
        )
        log = RunLog(log, output_dir / "train.log")
    state = fit(model, data.train, data.valid, config, output_dir, log, start.checkpoint, ranks, start.fingerprint)
    log(f"trained {state.epoch} epochs; best validation loss {state.best_valid_loss:.6g} at epoch {state.best_epoch}")
    barrier(ranks)  # model.pt is complete before any rank reads it
    if refits_shift(config):
        sets = [data.train] + ([data.valid] if config.final_shift_data == "train+valid" and data.valid else [])
        refit_saved_shift(output_dir / "model.pt", sets, config, log, ranks)
    return report(config, data, state, log, ranks)


def refit_saved_shift(
    path: Path, datasets: list[GraphDataset], config: TrainConfig, log: Callable[[str], None], ranks: Ranks
) -> None:
    """Solve the energy-shift least squares (see .shift) exactly for the saved model on the given
    sets (config.final_shift_data), so that no constant energy offset is left in it."""
    model = load_model(path, config.device)
    fit = ShiftFit(len(model.config.elements), config.loss.energy_mode)
    for dataset in datasets:
        mine = part(list(range(len(dataset))), ranks)
        for start in range(0, len(mine), config.valid_batch_size):
            batch = collate([dataset[i] for i in mine[start : start + config.valid_batch_size]])
            batch = batch.to(model.embedding.device, model.embedding.dtype)
            out = compute_properties(model, batch, forces=False)
            fit.add(batch, species_index(model.z_to_index, batch.numbers), out["energy"])
    delta = fit.solve(ranks)
    if delta is None:
        return
    apply_shift([model], delta)
    names = "the training and validation sets" if len(datasets) > 1 else "the training set"
    log(
        f"energy shift refit on {names} (eV): "
        + ", ".join(f"{e} {d:+.3g}" for e, d in zip(model.config.elements, delta.tolist()))
    )
    if ranks.is_main:
        save_model(model, path)
    barrier(ranks)


def prepare(config: TrainConfig, log: Callable[[str], None], ranks: Ranks) -> tuple[PreparedData, ModelConfig]:
    """Read the data and complete the model config with its statistics."""
    preprocessed = is_preprocessed(config.train_file)
    data = _sharded_data(config) if preprocessed else _in_memory_data(config, ranks, log)
    model_config = replace(
        config.model,
        elements=data.elements,
        atomic_energies=data.atomic_energies,
        avg_num_neighbors=data.avg_num_neighbors,
        scale=data.scale,
    )
    where = "streamed from HDF5 shards" if preprocessed else "in memory"
    log(f"data ({where}): {len(data.train)} train, {len(data.valid)} valid structures; elements {data.elements}")
    if ranks.distributed:
        log(f"distributed: {ranks.world_size} processes, global batch {config.batch_size}")
    e0s_label = "given" if isinstance(config.E0s, dict) else ("preprocessed" if preprocessed else config.E0s)
    log("E0s (eV): " + ", ".join(f"{e} {v:.4f}" for e, v in data.atomic_energies.items()) + f" [{e0s_label}]")
    log(
        f"average neighbours {model_config.avg_num_neighbors:.3f}, energy scale (force RMS) {model_config.scale:.4f} eV/A"
    )
    return data, model_config


def report(config: TrainConfig, data: PreparedData, state, log: Callable[[str], None], ranks: Ranks) -> dict:
    """Errors of the best model on the validation and test sets; metrics.json and the plots."""
    output_dir = Path(config.output_dir)
    best = load_model(output_dir / "model.pt", config.device)
    results, parity = {}, {}
    for name, dataset in (("valid", data.valid), ("test", data.test())):
        if dataset is None:
            continue
        _, errors, predictions = evaluate(
            best, dataset, config.loss, config.valid_batch_size, ranks=ranks, keep_predictions=PARITY_POINTS
        )
        results[name] = errors.metrics()
        for group, metrics in errors.all_metrics().items():
            if group != "all":
                results[f"{name}:{group}"] = metrics
        parity[name] = predictions
    log(format_table(results, "errors of the best model (energies in meV, forces in meV/A)"))
    if ranks.is_main:
        atomic_text(output_dir / "metrics.json", json.dumps(results, indent=1))
        _plots(output_dir, state.history, parity, log)
    return results


PARITY_POINTS = 2000  # structures per set in parity.png (bounded memory on large sets)


def _silent(message: str) -> None:
    pass


def _plots(output_dir: Path, history: list[dict], parity: dict, log: Callable[[str], None]) -> None:
    try:
        from .plots import learning_curve, parity_plot
    except ImportError as exc:  # matplotlib missing: the run itself is still complete
        log(f"plots skipped: {exc}")
        return
    learning_curve(history, output_dir / "learning_curve.png")
    parity_plot(parity, output_dir / "parity.png")
