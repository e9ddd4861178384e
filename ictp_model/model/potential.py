"""The one place where forces, virials and stress are derived from per-atom energies.

The network's energy depends on positions only through the edge vectors r_ij = r_j - r_i + S_ij·cell,
so with g_ij = ∂E/∂r_ij:

    F_k = -∂E/∂r_k = Σ_{edges with i = k} g_ij - Σ_{edges with j = k} g_ij
    W   = -∂E/∂ε   = -Σ_edges r_ij ⊗ g_ij     (virial under a symmetric strain ε)
    σ   = -W / V                             (ASE sign: positive = tensile)

This is exact for periodic cells too (a strain maps every edge vector r -> (1 + ε) r), and it is
what the LAMMPS pair style uses, where ghost atoms replace periodic shifts.  The edge-based
expressions are TorchScript-compatible and shared with :mod:`ictp_export`.
"""

from typing import Optional

import torch
from torch import Tensor

from ictp_model.data.graph import AtomicGraph

from .bounded import BoundedEvaluation


def species_index(z_to_index: Tensor, numbers: Tensor) -> Tensor:
    """Atomic numbers (N,) -> the model's species indices (N,).

    Raises:
        ValueError: naming the atomic numbers the model does not know.
    """
    if bool((numbers < 0).any()) or bool((numbers >= z_to_index.shape[0]).any()):
        raise ValueError(f"invalid atomic numbers {sorted(set(numbers.tolist()))}")
    species = z_to_index.index_select(0, numbers)
    if bool((species < 0).any()):
        from ase.data import chemical_symbols

        missing = sorted({chemical_symbols[int(z)] for z in numbers[species < 0]})
        known = [chemical_symbols[int(z)] for z in torch.nonzero(z_to_index >= 0).flatten()]
        raise ValueError(f"elements {missing} are not known to the model (it knows {known})")
    return species


def edge_vectors(positions: Tensor, edge_index: Tensor, shifts: Tensor, cell: Tensor, batch: Tensor) -> Tensor:
    """r_ij = r_j - r_i + S_ij · cell of i's structure.  Shapes: -> (E, 3)."""
    i, j = edge_index[0], edge_index[1]
    return positions.index_select(0, j) - positions.index_select(0, i) + image_offsets(edge_index, shifts, cell, batch)


def image_offsets(edge_index: Tensor, shifts: Tensor, cell: Tensor, batch: Tensor) -> Tensor:
    """S_ij · cell of i's structure: each edge's periodic-image offset in Å.  Shapes: -> (E, 3)."""
    cell_of_edge = cell.index_select(0, batch.index_select(0, edge_index[0]))  # (E, 3, 3)
    return torch.bmm(shifts.unsqueeze(1), cell_of_edge).squeeze(1)


def edge_gradients(energy: Tensor, vectors: Tensor, create_graph: bool) -> Tensor:
    """g_ij = ∂(Σ energy)/∂r_ij, zeros where the energy does not depend on an edge."""
    grads: list[Optional[Tensor]] = torch.autograd.grad(
        [energy.sum()], [vectors], create_graph=create_graph, allow_unused=True
    )
    g = grads[0]
    return torch.zeros_like(vectors) if g is None else g


def forces_from_edges(gradients: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """F_k = Σ_{i = k} g_ij - Σ_{j = k} g_ij.  Shapes: (E, 3) -> (N, 3)."""
    forces = torch.zeros(num_nodes, 3, dtype=gradients.dtype, device=gradients.device)
    return forces.index_add(0, edge_index[0], gradients).index_add(0, edge_index[1], -gradients)


def edge_virials(gradients: Tensor, vectors: Tensor) -> Tensor:
    """Per-edge virial contributions -r_ij ⊗ g_ij.  Shapes: (E, 3) -> (E, 3, 3)."""
    return -vectors.unsqueeze(-1) * gradients.unsqueeze(-2)


def compute_properties(
    network: torch.nn.Module,
    graph: AtomicGraph,
    forces: bool = True,
    stress: bool = False,
    training: bool = False,
    memory_mb: Optional[float] = None,
    species: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """Energies and their derivatives for a (batched) graph.

    Args:
        forces: also return forces (N, 3).
        stress: also return virial (G, 3, 3) and stress (G, 3, 3); the stress is zero for
            structures without a finite cell volume.
        training: keep the graph of forces/stress so that a loss on them can be differentiated.
        memory_mb: evaluate in bounded memory (:mod:`.bounded`) within this working-memory
            budget in MiB (<= 0: its default); the same numbers, for systems of any size.  Not
            with training (its loss needs second derivatives).
        species: the model's species indices of graph.numbers, where the caller has them (a
            traced training step, which cannot check atomic numbers).

    Returns:
        dict with node_energy (N,), energy (G,) and, as asked, forces, virial, stress.
    """
    dtype = network.embedding.dtype
    graph = graph.to(device=network.embedding.device, dtype=dtype)
    species = species_index(network.z_to_index, graph.numbers) if species is None else species
    vectors = edge_vectors(graph.positions, graph.edge_index, graph.shifts, graph.cell, graph.batch)
    need_grad = forces or stress
    bounded = memory_mb is not None and need_grad and not training
    if bounded:
        evaluation = BoundedEvaluation(network)
        node_energy, g = evaluation(species, graph.edge_index, vectors, None, evaluation.chunk_edges(memory_mb))
    else:
        if need_grad:
            vectors = vectors.detach().requires_grad_(True)
        node_energy = network(species, graph.edge_index, vectors)
    energy = torch.zeros(graph.num_graphs, dtype=dtype, device=node_energy.device)
    out = {"node_energy": node_energy, "energy": energy.index_add(0, graph.batch, node_energy)}
    if not need_grad:
        return out
    if not bounded:  # the bounded evaluation returns its edge gradients itself
        g = edge_gradients(node_energy, vectors, create_graph=training)
    if forces:
        out["forces"] = forces_from_edges(g, graph.edge_index, graph.positions.shape[0])  # (symbolic when traced)
    if stress:
        edge_graph = graph.batch.index_select(0, graph.edge_index[0])
        virial = torch.zeros(graph.num_graphs, 3, 3, dtype=dtype, device=g.device)
        virial = virial.index_add(0, edge_graph, edge_virials(g, vectors.detach()))
        out["virial"] = virial
        out["stress"] = stress_from_virial(virial, graph.cell)
    return out


def stress_from_virial(virial: Tensor, cell: Tensor) -> Tensor:
    """σ = -W / V per structure; zero where the cell has no volume.  Shapes: (G, 3, 3) -> (G, 3, 3)."""
    volume = torch.linalg.det(cell.to(virial.dtype)).abs()
    safe = torch.where(volume > 1e-12, volume, torch.ones_like(volume))
    return torch.where((volume > 1e-12)[:, None, None], -virial / safe[:, None, None], 0.0 * virial)
