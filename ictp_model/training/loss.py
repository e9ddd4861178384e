"""Weighted energy / forces / stress losses (MSE or Huber; sum over the batch as in the paper, or mean).

The terms are kept as (sum, count) pairs so that parts of a batch (the ranks of a distributed run)
and parts of a data set (evaluation batches) combine exactly."""

from typing import Optional

import torch
from torch import Tensor

from ictp_model.data.graph import AtomicGraph

from .config import LossConfig


def _penalty(diff: Tensor, kind: str, delta: float) -> Tensor:
    if kind == "huber":
        return torch.nn.functional.huber_loss(diff, torch.zeros_like(diff), reduction="none", delta=delta)
    return diff.pow(2)


LOSS_TERMS = ("energy", "forces", "stress")


def loss_terms(
    pred: dict[str, Tensor], graph: AtomicGraph, weights: LossConfig, num_atoms: Optional[Tensor] = None
) -> dict[str, tuple[Tensor, Tensor]]:
    """Each active term's Σ_structures weight_g · penalty(prediction - label) and the count that a
    mean divides it by (weights of structures, force or stress components).

    Energy differences are divided by N (energy_mode per_atom), √N (sqrt_atoms) or left as they are
    (total). Forces and stress are per component; stress counts only where stress_mask is 1.
    num_atoms (G,): atoms per structure, counted here when not given (a traced graph cannot count).
    """
    counts = term_counts(graph, weights)
    if num_atoms is None:
        num_atoms = torch.bincount(graph.batch, minlength=graph.num_graphs).to(pred["energy"].dtype)
    sums = term_sums(pred, graph, weights, num_atoms)
    return {name: (value, counts[name]) for name, value in sums.items()}


def _structure_weights(graph: AtomicGraph) -> Tensor:
    if graph.weight is not None:
        return graph.weight
    return torch.ones(graph.num_graphs, dtype=graph.positions.dtype, device=graph.positions.device)


def _stress_mask(graph: AtomicGraph) -> Tensor:
    weight = _structure_weights(graph)
    return weight * graph.stress_mask if graph.stress_mask is not None else weight


def active_terms(graph: AtomicGraph, weights: LossConfig) -> list[str]:
    """The loss terms with a weight > 0 whose labels the batch has."""
    return [t for t in LOSS_TERMS if weights.weight(t) > 0 and (t != "stress" or graph.stress is not None)]


def term_counts(graph: AtomicGraph, weights: LossConfig) -> dict[str, Tensor]:
    """What a mean divides each active term by; the labels alone decide it, not the model."""
    struct_weight = _structure_weights(graph)
    counts = {
        "energy": lambda: struct_weight.sum(),
        "forces": lambda: 3 * struct_weight.index_select(0, graph.batch).sum(),
        "stress": lambda: 9 * _stress_mask(graph).sum(),
    }
    return {name: counts[name]() for name in active_terms(graph, weights)}


def term_sums(pred: dict[str, Tensor], graph: AtomicGraph, weights: LossConfig, num_atoms: Tensor) -> dict[str, Tensor]:
    """Each active term's weighted sum of penalties (see loss_terms)."""
    kind, delta = weights.type, weights.huber_delta
    struct_weight = _structure_weights(graph)
    sums: dict[str, Tensor] = {}
    for name in active_terms(graph, weights):
        if name == "energy":
            diff = pred["energy"] - graph.energy
            if weights.energy_mode == "per_atom":
                diff = diff / num_atoms
            elif weights.energy_mode == "sqrt_atoms":
                diff = diff / num_atoms.sqrt()
            sums[name] = (struct_weight * _penalty(diff, kind, delta)).sum()
        elif name == "forces":
            atom_weight = struct_weight.index_select(0, graph.batch).unsqueeze(-1)
            sums[name] = (atom_weight * _penalty(pred["forces"] - graph.forces, kind, delta)).sum()
        else:
            mask = _stress_mask(graph)[:, None, None]
            sums[name] = (mask * _penalty(pred["stress"] - graph.stress, kind, delta)).sum()
    return sums


def coefficients(counts: dict[str, Tensor], weights: LossConfig) -> dict[str, Tensor]:
    """The factor of each term's sum in the loss: w_term (reduction sum, the paper's SSE) or
    w_term / count (mean)."""
    if weights.reduction == "sum":
        return {name: torch.ones_like(count) * weights.weight(name) for name, count in counts.items()}
    return {name: weights.weight(name) / count.clamp(min=1) for name, count in counts.items()}


def combine(sums: dict[str, Tensor], counts: dict[str, Tensor], weights: LossConfig) -> Tensor:
    """Σ_terms coefficient · sum (see coefficients).  Counts may be those of a larger batch than
    the sums (a rank's part of a global batch)."""
    factors = coefficients({name: counts[name] for name in sums}, weights)
    total = None
    for name, value in sums.items():
        total = factors[name] * value if total is None else total + factors[name] * value
    return total if total is not None else torch.zeros(())


def weighted_loss(pred: dict[str, Tensor], graph: AtomicGraph, weights: LossConfig) -> Tensor:
    """The loss of one batch."""
    terms = loss_terms(pred, graph, weights)
    return combine({k: s for k, (s, _) in terms.items()}, {k: c for k, (_, c) in terms.items()}, weights)
