"""Neighbour lists: vesin (periodic, non-periodic, mixed, cells smaller than the cutoff) and a
brute-force reference used by the tests."""

import itertools

import numpy as np
import vesin

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # i (E,), j (E,), integer shifts S (E, 3)


def neighbour_list(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> Pairs:
    """All ordered pairs (i, j, S) with |r_j - r_i + S·cell| < cutoff, excluding i == j with S == 0.

    An atom sees its own periodic images when the cell is smaller than the cutoff.
    """
    pbc = np.asarray(pbc, dtype=bool)
    box = np.where(pbc[:, None], np.asarray(cell, dtype=np.float64), 0.0) if pbc.any() else np.zeros((3, 3))
    if pbc.any() and abs(np.linalg.det(np.asarray(cell, dtype=np.float64))) < 1e-12:
        raise ValueError("periodic cell has zero volume")
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts = calculator.compute(
        points=np.asarray(positions, dtype=np.float64), box=box, periodic=pbc.tolist(), quantities="ijS"
    )
    return i.astype(np.int64), j.astype(np.int64), shifts.astype(np.int64)


def brute_force_neighbour_list(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> Pairs:
    """O(N² · images) reference of :func:`neighbour_list`."""
    positions = np.asarray(positions, dtype=np.float64)
    cell = np.asarray(cell, dtype=np.float64)
    ranges = []
    for axis in range(3):
        if pbc[axis]:
            # enough images along this axis: cutoff / distance between opposite faces
            other = np.cross(cell[(axis + 1) % 3], cell[(axis + 2) % 3])
            height = abs(np.dot(cell[axis], other)) / np.linalg.norm(other)
            n = int(np.ceil(cutoff / height)) + 1
            ranges.append(range(-n, n + 1))
        else:
            ranges.append(range(0, 1))
    out_i, out_j, out_s = [], [], []
    for shift in itertools.product(*ranges):
        offset = np.asarray(shift, dtype=np.float64) @ cell
        d = positions[None, :, :] - positions[:, None, :] + offset  # d[i, j] = r_j - r_i + S·cell
        dist = np.linalg.norm(d, axis=-1)
        mask = dist < cutoff
        if shift == (0, 0, 0):
            np.fill_diagonal(mask, False)
        i, j = np.nonzero(mask)
        out_i.append(i)
        out_j.append(j)
        out_s.append(np.tile(np.asarray(shift), (len(i), 1)))
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s).astype(np.int64)
