"""AtomicGraph: the immutable, typed container every part of the library passes around.

Glossary (N atoms, E directed edges, G structures in a batch):

| field | shape, dtype | meaning |
|---|---|---|
| numbers | (N,) int64 | atomic numbers |
| positions | (N, 3) float | Cartesian positions, Å |
| cell | (G, 3, 3) float | lattice vectors as rows, Å (zeros for non-periodic directions is allowed) |
| pbc | (G, 3) bool | periodicity per lattice direction |
| edge_index | (2, E) int64 | row 0: centre atom i (receives the message), row 1: neighbour j |
| shifts | (E, 3) float | integer lattice shifts S_ij: r_ij = r_j - r_i + S_ij · cell |
| batch | (N,) int64 | structure index of each atom |
| num_graphs | int | G |
| energy | (G,) float or None | reference total energy, eV |
| forces | (N, 3) float or None | reference forces, eV/Å |
| stress | (G, 3, 3) float or None | reference stress, eV/Å³, ASE sign (positive = tensile) |
| weight | (G,) float or None | per-structure loss weight |
| stress_mask | (G,) float or None | 1 where the structure has a stress label, else 0 |
"""

from typing import NamedTuple, Optional

import numpy as np
import torch
from ase import Atoms
from torch import Tensor

from .neighbours import check_edge_lengths, neighbour_list


class AtomicGraph(NamedTuple):
    numbers: Tensor
    positions: Tensor
    cell: Tensor
    pbc: Tensor
    edge_index: Tensor
    shifts: Tensor
    batch: Tensor
    num_graphs: int
    energy: Optional[Tensor] = None
    forces: Optional[Tensor] = None
    stress: Optional[Tensor] = None
    weight: Optional[Tensor] = None
    stress_mask: Optional[Tensor] = None

    @property
    def num_nodes(self) -> int:
        return int(self.numbers.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "AtomicGraph":
        """Move to a device and cast the floating-point fields to dtype."""

        def move(x):
            if not isinstance(x, Tensor):
                return x
            if x.is_floating_point() and dtype is not None:
                return x.to(device=device, dtype=dtype)
            return x.to(device=device)

        return AtomicGraph(*[move(x) for x in self])


def graph_from_atoms(
    atoms: Atoms,
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    energy: Optional[float] = None,
    forces: Optional[np.ndarray] = None,
    stress: Optional[np.ndarray] = None,
    weight: float = 1.0,
    labelled: bool = False,
) -> AtomicGraph:
    """One structure as a graph with all neighbours within ``cutoff``.

    With ``labelled``, missing forces/stress are stored as zeros (stress with stress_mask 0), so
    that a batch of training structures always carries every label field.

    Raises:
        ValueError: NaN/inf positions or cell, a periodic cell of zero volume, or atoms closer
            than MIN_DISTANCE (naming them).
    """
    return graph_from_arrays(
        atoms.get_atomic_numbers(), atoms.get_positions(), atoms.get_cell()[:], atoms.get_pbc(),
        cutoff, dtype, energy, forces, stress, weight, labelled,
    )  # fmt: skip


def graph_from_arrays(
    numbers: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    dtype: torch.dtype = torch.float64,
    energy: Optional[float] = None,
    forces: Optional[np.ndarray] = None,
    stress: Optional[np.ndarray] = None,
    weight: float = 1.0,
    labelled: bool = False,
    edges: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
) -> AtomicGraph:
    """graph_from_atoms from plain arrays; ``edges`` = (i, j, shifts) skips the neighbour search."""
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    if not np.isfinite(positions).all():
        raise ValueError("positions contain NaN or inf")
    if not np.isfinite(cell).all():
        raise ValueError("cell contains NaN or inf")
    i, j, shifts = edges if edges is not None else neighbour_list(positions, cell, pbc, cutoff)
    check_edge_lengths(positions, cell, (i, j, shifts))

    def optional(value, shape):
        return (
            None if value is None else torch.as_tensor(np.asarray(value, dtype=np.float64), dtype=dtype).reshape(shape)
        )

    stress_mask = None
    if labelled:
        forces = np.zeros((len(positions), 3)) if forces is None else forces
        stress_mask = torch.tensor([0.0 if stress is None else 1.0], dtype=dtype)
        stress = np.zeros((3, 3)) if stress is None else stress

    return AtomicGraph(
        numbers=torch.as_tensor(np.asarray(numbers), dtype=torch.long),
        positions=torch.as_tensor(positions, dtype=dtype),
        cell=torch.as_tensor(cell, dtype=dtype).unsqueeze(0),
        pbc=torch.as_tensor(pbc).unsqueeze(0),
        edge_index=torch.as_tensor(np.stack([i, j]), dtype=torch.long),
        shifts=torch.as_tensor(np.asarray(shifts, dtype=np.float64), dtype=dtype),
        batch=torch.zeros(len(positions), dtype=torch.long),
        num_graphs=1,
        energy=optional(energy, (1,)),
        forces=optional(forces, (-1, 3)),
        stress=optional(stress, (1, 3, 3)),
        weight=torch.tensor([weight], dtype=dtype),
        stress_mask=stress_mask,
    )


def collate(graphs: list[AtomicGraph]) -> AtomicGraph:
    """Concatenate graphs into one batch: node indices of later graphs are offset, batch counts
    structures. Labels are kept only if every graph has them."""
    if not graphs:
        raise ValueError("cannot collate an empty list of graphs")
    offsets = np.cumsum([0] + [g.num_nodes for g in graphs[:-1]])
    batch_ids = [g.batch + b for b, g in zip(np.cumsum([0] + [g.num_graphs for g in graphs[:-1]]), graphs)]

    def cat_labels(name: str) -> Optional[Tensor]:
        values = [getattr(g, name) for g in graphs]
        return None if any(v is None for v in values) else torch.cat(values)

    return AtomicGraph(
        numbers=torch.cat([g.numbers for g in graphs]),
        positions=torch.cat([g.positions for g in graphs]),
        cell=torch.cat([g.cell for g in graphs]),
        pbc=torch.cat([g.pbc for g in graphs]),
        edge_index=torch.cat([g.edge_index + int(o) for g, o in zip(graphs, offsets)], dim=1),
        shifts=torch.cat([g.shifts for g in graphs]),
        batch=torch.cat(batch_ids),
        num_graphs=sum(g.num_graphs for g in graphs),
        energy=cat_labels("energy"),
        forces=cat_labels("forces"),
        stress=cat_labels("stress"),
        weight=cat_labels("weight"),
        stress_mask=cat_labels("stress_mask"),
    )
