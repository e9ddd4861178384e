"""Neighbour lists: vesin (periodic, non-periodic, mixed, cells smaller than the cutoff) and a
brute-force reference used by the tests."""

import itertools

import numpy as np
import vesin

Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]  # i (E,), j (E,), integer shifts S (E, 3)

# Closer than this, two atoms are one atom written twice (or a broken unit conversion): no
# interatomic potential is defined there, and at zero distance the edge direction is undefined
# (NaN gradients). 0.1 Å is a fifth of the shortest bond (H2, 0.74 Å) even at a nuclear-fusion
# level of compression, so no physical structure is refused.
MIN_DISTANCE = 0.1


def close_pairs_message(i: np.ndarray, j: np.ndarray, distances: np.ndarray, min_distance: float) -> str:
    """'atoms 0 and 3 are 0.0000 A apart (...)' for the closest few pairs (each pair once)."""
    closest: dict[tuple[int, int], float] = {}
    for a, b, d in zip(i.tolist(), j.tolist(), distances.tolist()):
        key = (min(a, b), max(a, b))
        closest[key] = min(d, closest.get(key, d))
    ranked = sorted(closest.items(), key=lambda item: item[1])
    shown = [
        f"atom {a} and its periodic image are {d:.4f} A apart" if a == b else f"atoms {a} and {b} are {d:.4f} A apart"
        for (a, b), d in ranked[:5]
    ]
    pairs = ", ".join(shown)
    more = f" (and {len(ranked) - len(shown)} more pairs)" if len(ranked) > len(shown) else ""
    return f"{pairs}{more}: closer than {min_distance} A, atoms overlap (indices from 0)"


def check_edge_lengths(
    positions: np.ndarray, cell: np.ndarray, pairs: Pairs, min_distance: float = MIN_DISTANCE
) -> None:
    """Raise ValueError naming the atoms of every edge shorter than ``min_distance``."""
    i, j, shifts = pairs
    if len(i) == 0:
        return
    vectors = positions[j] - positions[i] + shifts.astype(np.float64) @ np.asarray(cell, dtype=np.float64)
    distances = np.linalg.norm(vectors, axis=1)
    close = distances < min_distance
    if close.any():
        raise ValueError(close_pairs_message(i[close], j[close], distances[close], min_distance))


def check_min_distance(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, min_distance: float = MIN_DISTANCE
) -> None:
    """Raise ValueError naming the atoms closer than ``min_distance`` (periodic images included)."""
    positions = np.asarray(positions, dtype=np.float64)
    if len(positions) < 2 and not np.asarray(pbc).any():
        return
    pairs = neighbour_list(positions, cell, pbc, min_distance)
    check_edge_lengths(positions, cell, pairs, min_distance)


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
