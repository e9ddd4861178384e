"""`ictp train` as a library call: read and split data, compute statistics, build the model, fit,
evaluate the best model and write the outputs."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from ictp_model.data.graph import AtomicGraph, graph_from_atoms
from ictp_model.data.io import DataError, Keys, Sample, read_samples
from ictp_model.data.statistics import (
    average_num_neighbors,
    check_elements,
    e0s_from_isolated_atoms,
    e0s_least_squares,
    elements_in,
    force_rms,
)
from ictp_model.model.build import build_model
from ictp_model.model.config import ModelConfig, check_keys, resolve_config
from ictp_model.model.io import load_model

from .config import ConfigError, TrainConfig
from .loop import evaluate, fit
from .metrics import format_table


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
            raise DataError(
                f"{config.train_file}: frame -: key '-': {len(samples)} structures cannot give {n_valid} for validation"
            )
        valid = [samples[i] for i in order[:n_valid]]
        train_idx = order[n_valid:]
    if config.train_size is not None:
        if config.train_size > len(train_idx):
            raise DataError(
                f"{config.train_file}: frame -: key '-': train_size {config.train_size} > {len(train_idx)} available"
            )
        train_idx = train_idx[: config.train_size]
    train = [samples[i] for i in train_idx]
    test = read_samples(config.test_file, keys) if config.test_file else []
    return DataSplits(train, valid, test, isolated)


def resolve_e0s(config: TrainConfig, splits: DataSplits, elements: list[str]) -> dict[str, float]:
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
        return e0s_least_squares(splits.train, elements)
    keys = Keys(energy=config.energy_key)
    found = e0s_from_isolated_atoms(
        splits.isolated if source == "isolated" else read_samples(source, keys, require_forces=False)
    )
    missing = sorted(set(elements) - set(found))
    if missing:
        where = f"{config.train_file} (config_type=IsolatedAtom)" if source == "isolated" else source
        raise DataError(f"{where}: frame -: key 'energy': no isolated-atom energy for elements {missing}")
    return {e: found[e] for e in elements}


def to_graphs(samples: list[Sample], cutoff: float, dtype: torch.dtype) -> list[AtomicGraph]:
    return [
        graph_from_atoms(s.atoms, cutoff, dtype, s.energy, s.forces, s.stress, s.weight, labelled=True) for s in samples
    ]


def run_training(config: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Train a model as configured; returns the final metrics. All validation happens before the
    first file is written, so a failing run leaves an existing output folder untouched."""
    check_keys(config.model_dict, ModelConfig, "model", extra=("preset",), error=ConfigError)
    output_dir = Path(config.output_dir)
    torch.manual_seed(config.seed)
    splits = load_splits(config)
    model_values = config.model_dict
    elements = model_values.get("elements") or elements_in(splits.train + splits.valid + splits.test)
    for part in (splits.train, splits.valid, splits.test):
        check_elements(part, elements)
    e0s = resolve_e0s(config, splits, elements)
    probe = resolve_config({**model_values, "elements": elements, "dtype": config.dtype})
    dtype = getattr(torch, config.dtype)
    train_graphs = to_graphs(splits.train, probe.cutoff, dtype)
    valid_graphs = to_graphs(splits.valid, probe.cutoff, dtype)
    model_config = resolve_config(
        probe,
        atomic_energies=e0s,
        avg_num_neighbors=average_num_neighbors(train_graphs),
        scale=force_rms(splits.train),
    )
    log(
        f"data: {len(splits.train)} train, {len(splits.valid)} valid, {len(splits.test)} test structures; elements {elements}"
    )
    log(
        "E0s (eV): "
        + ", ".join(f"{e} {v:.4f}" for e, v in e0s.items())
        + f" [{config.E0s if not isinstance(config.E0s, dict) else 'given'}]"
    )
    log(
        f"average neighbours {model_config.avg_num_neighbors:.3f}, energy scale (force RMS) {model_config.scale:.4f} eV/A"
    )

    checkpoint = None
    last = output_dir / "checkpoint_last.pt"
    if config.resume and last.is_file():
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
        model_config = ModelConfig.from_dict(checkpoint["model"]["config"])
    model = build_model(model_config).to(config.device)
    log(
        f"model: {model_config.variant}, {model_config.storage}, C={model_config.channels}, L={model_config.max_rank}, "
        f"l_max={model_config.edge_rank}, nu={model_config.correlation}, {sum(p.numel() for p in model.parameters())} parameters"
    )

    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "config.yaml").write_text(
        yaml.safe_dump({**config.to_dict(), "model": model_config.to_dict()}, sort_keys=False)
    )
    state = fit(model, (train_graphs, splits.train), (valid_graphs, splits.valid), config, output_dir, log, checkpoint)
    log(f"trained {state.epoch} epochs; best validation loss {state.best_valid_loss:.6g} at epoch {state.best_epoch}")

    best = load_model(output_dir / "model.pt", config.device)
    results, parity = {}, {}
    for name, samples, graphs in (
        ("valid", splits.valid, valid_graphs),
        ("test", splits.test, to_graphs(splits.test, probe.cutoff, dtype) if splits.test else []),
    ):
        if not samples:
            continue
        _, errors, predictions = evaluate(best, graphs, samples, config)
        results[name] = errors.metrics()
        for group, metrics in errors.all_metrics().items():
            if group != "all":
                results[f"{name}:{group}"] = metrics
        parity[name] = (samples, predictions)
    log(format_table(results, "errors of the best model (energies in meV, forces in meV/A)"))
    (output_dir / "metrics.json").write_text(json.dumps(results, indent=1))
    _plots(output_dir, state.history, parity, log)
    return results


def _plots(output_dir: Path, history: list[dict], parity: dict, log: Callable[[str], None]) -> None:
    try:
        from .plots import learning_curve, parity_plot
    except ImportError as exc:  # matplotlib missing: the run itself is still complete
        log(f"plots skipped: {exc}")
        return
    learning_curve(history, output_dir / "learning_curve.png")
    parity_plot(parity, output_dir / "parity.png")
