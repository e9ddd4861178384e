"""`ictp eval`: errors of a model on labelled files, per file and per config_type."""

import argparse
import json
from pathlib import Path

import torch
from ase.io import write

from ictp_model.data.dataset import InMemoryDataset
from ictp_model.data.io import Keys, read_samples
from ictp_model.data.statistics import check_elements
from ictp_model.device import check_device
from ictp_model.files import atomic_text, atomic_write
from ictp_model.model.io import load_model
from ictp_model.training.config import LossConfig
from ictp_model.training.evaluation import evaluate, is_compiled
from ictp_model.training.metrics import format_table


def _load(path: str, device: str):
    """The model file, or a compiled export (.pt2) run as it was compiled."""
    if Path(path).suffix != ".pt2":
        model = load_model(path, check_device(device))
        model.use_edge_kernel(torch.device(check_device(device)).type == "cpu")  # inference only
        return model
    from ictp_export.compiled import CompiledModel

    compiled = CompiledModel(path)
    if compiled.device != torch.device(check_device(device)):
        raise ValueError(f"{path} was compiled for {compiled.device}, not {device}; export it again for {device}")
    return compiled


def run_eval(args: argparse.Namespace) -> int:
    model = _load(args.model, args.device)
    config = model.config
    keys = Keys(args.energy_key, args.forces_key, args.stress_key, args.virials_key)
    # read and check every file before writing anything
    files = {path: read_samples(path, keys) for path in args.data}
    for samples in files.values():
        check_elements(samples, config.elements)
    loss = LossConfig()  # the loss column uses the training defaults; the errors do not depend on it
    dtype = torch.float64 if is_compiled(model) else config.torch_dtype  # a .pt2 takes float64 positions
    results, written = {}, []
    for path, samples in files.items():
        has_stress = any(s.stress is not None for s in samples)
        dataset = InMemoryDataset.from_samples(samples, config.cutoff, dtype)
        _, errors, predictions = evaluate(
            model,
            dataset,
            loss,
            args.batch_size,
            stress=has_stress,
            keep_predictions=len(samples),
            memory_mb=args.memory,
        )
        name = Path(path).name
        results[name] = errors.metrics()
        for group, metrics in errors.all_metrics().items():
            if group != "all":
                results[f"{name}:{group}"] = metrics
        for sample, pred in zip(samples, predictions):
            atoms = sample.atoms.copy()
            atoms.calc = None
            atoms.info["ICTP_energy"] = pred["energy"]
            atoms.arrays["ICTP_forces"] = pred["forces"]
            if pred["stress"] is not None and atoms.pbc.any():
                atoms.info["ICTP_stress"] = pred["stress"].reshape(-1)
            if sample.energy is not None:
                atoms.info["REF_energy"] = sample.energy
            if sample.forces is not None:
                atoms.arrays["REF_forces"] = sample.forces
            written.append(atoms)
    print(format_table(results, f"{args.model}: errors (energies in meV, forces in meV/A, stress in meV/A^3)"))
    if args.json:
        atomic_text(args.json, json.dumps(results, indent=1))
    if args.write_predictions:
        atomic_write(args.write_predictions, lambda tmp: write(tmp, written, format="extxyz"))
    return 0
