"""A model's loss and errors over a data set, in batches, on one or many ranks (validation
during training, `ictp eval`, the test set after training)."""

from typing import Optional

import torch

from ictp_model.data.dataset import GraphDataset
from ictp_model.data.graph import AtomicGraph, collate
from ictp_model.model.potential import compute_properties, species_index

from .compiled import CompiledPrediction
from .config import LossConfig
from .distributed import SINGLE, Ranks, all_reduce_sum, gather, part
from .loss import LOSS_TERMS, combine, loss_terms
from .metrics import ErrorAccumulator


def device_batch(dataset: GraphDataset, indices: list[int], model: torch.nn.Module) -> AtomicGraph:
    if is_compiled(model):  # a .pt2 takes float64 inputs on the device it was compiled for
        return collate([dataset[i] for i in indices]).to(model.device, torch.float64)
    return collate([dataset[i] for i in indices]).to(model.embedding.device, model.embedding.dtype)


def is_compiled(model) -> bool:
    """A compiled export (ictp_export.compiled.CompiledModel) rather than a network."""
    return not isinstance(model, torch.nn.Module) and hasattr(model, "properties")


def _predict(
    model, batch: AtomicGraph, stress: bool, memory_mb: Optional[float], compiled: Optional[CompiledPrediction]
) -> dict:
    if is_compiled(model):  # forces and stress come out of the package (derived there by the same code)
        return model.properties(batch, stress, memory_mb)
    if compiled is not None:
        return compiled(model, batch, species_index(model.z_to_index, batch.numbers), stress)
    return compute_properties(model, batch, forces=True, stress=stress, memory_mb=memory_mb)


def evaluate(
    model: torch.nn.Module,
    dataset: GraphDataset,
    loss: LossConfig,
    batch_size: int,
    stress: bool = False,
    ranks: Ranks = SINGLE,
    keep_predictions: int = 0,
    memory_mb: Optional[float] = None,
    compiled: Optional[CompiledPrediction] = None,
) -> tuple[float, ErrorAccumulator, list[dict]]:
    """Loss (with the loss settings ``loss``) and errors over a data set in batches of
    ``batch_size`` structures, each rank taking its part; the loss and the errors are summed over
    ranks. Also returns the predictions and labels of this rank's first ``keep_predictions``
    structures, in order.  memory_mb: see compute_properties (`ictp eval` on large structures;
    validation during training keeps the plain path).  model may also be a compiled export
    (ictp_export.compiled.CompiledModel), memory_mb likewise; compiled: the
    validation graph of compile: true, which evaluates model."""
    sums = {t: 0.0 for t in LOSS_TERMS}
    counts = {t: 0.0 for t in LOSS_TERMS}
    errors, predictions = ErrorAccumulator(), []
    mine = part(list(range(len(dataset))), ranks)
    with_stress = stress or loss.stress > 0
    for start in range(0, len(mine), batch_size):
        indices = mine[start : start + batch_size]
        batch = device_batch(dataset, indices, model)
        out = _predict(model, batch, with_stress, memory_mb, compiled)
        for name, (value, count) in loss_terms(out, batch, loss).items():
            sums[name] += float(value.detach())
            counts[name] += float(count)
        energy, forces = out["energy"].detach().double().cpu(), out["forces"].detach().double().cpu()
        labels = batch.to("cpu", torch.float64)
        for g, index in enumerate(indices):
            info = dataset.info(index)
            atom_mask = labels.batch == g
            pred_forces = forces[atom_mask].numpy()
            force_error = pred_forces - labels.forces[atom_mask].numpy() if info.has_forces else None
            pred_stress = out["stress"][g].detach().double().cpu().numpy() if "stress" in out else None
            stress_error = None
            if pred_stress is not None and info.has_stress:
                stress_error = pred_stress - labels.stress[g].numpy()
            num_atoms = int(atom_mask.sum())
            errors.add(info.config_type, float(energy[g] - labels.energy[g]), num_atoms, force_error, stress_error)
            if len(predictions) < keep_predictions:
                predictions.append(
                    {
                        "energy": float(energy[g]), "forces": pred_forces, "stress": pred_stress,
                        "num_atoms": num_atoms, "ref_energy": float(labels.energy[g]),
                        "ref_forces": labels.forces[atom_mask].numpy() if info.has_forces else None,
                    }
                )  # fmt: skip
    totals = [sums[t] for t in LOSS_TERMS] + [counts[t] for t in LOSS_TERMS]
    totals = all_reduce_sum(torch.tensor(totals, dtype=torch.float64), ranks)
    n = len(LOSS_TERMS)
    active = [i for i, t in enumerate(LOSS_TERMS) if loss.weight(t) > 0]
    total = combine({LOSS_TERMS[i]: totals[i] for i in active}, {LOSS_TERMS[i]: totals[n + i] for i in active}, loss)
    if ranks.distributed:
        merged = ErrorAccumulator()
        for other in gather(errors, ranks):
            merged.merge(other)
        errors = merged
    return float(total), errors, predictions
