"""Weighted energy / forces / stress losses (MSE or Huber; sum over the batch as in the paper, or mean).

The terms are kept as (sum, count) pairs so that parts of a batch (the ranks of a distributed run)
and parts of a data set (evaluation batches) combine exactly."""

import torch
from torch import Tensor

from ictp_model.data.graph import AtomicGraph

from .config import LossConfig


def _penalty(diff: Tensor, kind: str, delta: float) -> Tensor:
    if kind == "huber":
        return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta)
    return diff.pow(2)


LOSS_TERMS = ("energy", "forces", "stress")


def loss_terms(pred: dict[str, Tensor], graph: AtomicGraph, weights: LossConfig) -> dict[str, tuple[Tensor, Tensor]]:
    """Each active term's Σ_structures weight_g · penalty(prediction - label) and the count that a
    mean divides it by (weights of structures, force or stress components).

    Energy differences are divided by N (energy_mode per_atom), √N (sqrt_atoms) or left as they are
    (total). Forces and stress are per component; stress counts only where stress_mask is 1.
    """
    kind, delta = weights.type, weights.huber_delta
    num_atoms = torch.bincount(graph.batch, minlength=graph.num_graphs).to(pred["energy"].dtype)
    struct_weight = graph.weight if graph.weight is not None else torch.ones_like(num_atoms)
    terms: dict[str, tuple[Tensor, Tensor]] = {}
    if weights.energy > 0:
        diff = pred["energy"] - graph.energy
        mode = weights.energy_mode
        if mode == "per_atom":
            diff = diff / num_atoms
        elif mode == "sqrt_atoms":
            diff = diff / num_atoms.sqrt()
        terms["energy"] = ((struct_weight * _penalty(diff, kind, delta)).sum(), struct_weight.sum())
    if weights.forces > 0:
        atom_weight = struct_weight.index_select(0, graph.batch).unsqueeze(-1)
        values = atom_weight * _penalty(pred["forces"] - graph.forces, kind, delta)
        terms["forces"] = (values.sum(), 3 * atom_weight.sum())
    if weights.stress > 0 and graph.stress is not None:
        mask = struct_weight * (graph.stress_mask if graph.stress_mask is not None else 1.0)
        values = mask[:, None, None] * _penalty(pred["stress"] - graph.stress, kind, delta)
        terms["stress"] = (values.sum(), 9 * mask.sum())
    return terms


def combine(sums: dict[str, Tensor], counts: dict[str, Tensor], weights: LossConfig) -> Tensor:
    """Σ_terms w_term · sum (reduction sum, the paper's SSE) or w_term · sum / count (mean).
    Counts may be those of a larger batch than the sums (a rank's part of a global batch)."""
    total = None
    for name, value in sums.items():
        term = value if weights.reduction == "sum" else value / counts[name].clamp(min=1)
        total = weights.weight(name) * term if total is None else total + weights.weight(name) * term
    return total if total is not None else torch.zeros(())


def weighted_loss(pred: dict[str, Tensor], graph: AtomicGraph, weights: LossConfig) -> Tensor:
    """The loss of one batch."""
    terms = loss_terms(pred, graph, weights)
    return combine({k: s for k, (s, _) in terms.items()}, {k: c for k, (_, c) in terms.items()}, weights)
