"""Weighted energy / forces / stress losses (MSE or Huber; sum over the batch as in the paper, or mean)."""

import torch
from torch import Tensor

from ictp_model.data.graph import AtomicGraph


def _penalty(diff: Tensor, kind: str, delta: float) -> Tensor:
    if kind == "huber":
        return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta)
    return diff.pow(2)


def weighted_loss(pred: dict[str, Tensor], graph: AtomicGraph, weights: dict) -> tuple[Tensor, dict[str, float]]:
    """Σ_terms w_term · Σ_structures weight_g · penalty(prediction - label).

    Energy differences are divided by N (energy_mode per_atom), √N (sqrt_atoms) or left as they are
    (total). Forces and stress are per component; stress counts only where stress_mask is 1.

    Returns:
        the total loss and each term's value (for logging).
    """
    kind, delta, reduce_sum = weights["type"], float(weights["huber_delta"]), weights["reduction"] == "sum"
    num_atoms = torch.bincount(graph.batch, minlength=graph.num_graphs).to(pred["energy"].dtype)
    struct_weight = graph.weight if graph.weight is not None else torch.ones_like(num_atoms)
    total = torch.zeros((), dtype=pred["energy"].dtype, device=pred["energy"].device)
    parts: dict[str, float] = {}

    def reduce(values: Tensor, count: Tensor) -> Tensor:
        return values.sum() if reduce_sum else values.sum() / count.clamp(min=1)

    if weights["energy"] > 0:
        diff = pred["energy"] - graph.energy
        mode = weights["energy_mode"]
        if mode == "per_atom":
            diff = diff / num_atoms
        elif mode == "sqrt_atoms":
            diff = diff / num_atoms.sqrt()
        term = reduce(struct_weight * _penalty(diff, kind, delta), struct_weight.sum())
        total = total + weights["energy"] * term
        parts["energy"] = float(term.detach())
    if weights["forces"] > 0:
        atom_weight = struct_weight.index_select(0, graph.batch).unsqueeze(-1)
        values = atom_weight * _penalty(pred["forces"] - graph.forces, kind, delta)
        term = reduce(values, 3 * atom_weight.sum())
        total = total + weights["forces"] * term
        parts["forces"] = float(term.detach())
    if weights["stress"] > 0 and graph.stress is not None:
        mask = struct_weight * (graph.stress_mask if graph.stress_mask is not None else 1.0)
        values = mask[:, None, None] * _penalty(pred["stress"] - graph.stress, kind, delta)
        term = reduce(values, 9 * mask.sum())
        total = total + weights["stress"] * term
        parts["stress"] = float(term.detach())
    return total, parts
