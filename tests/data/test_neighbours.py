"""The vesin neighbour list against a brute-force reference."""

import numpy as np
import pytest

from ictp_model.data.neighbours import brute_force_neighbour_list, neighbour_list


def as_set(i, j, s):
    return set(zip(i.tolist(), j.tolist(), map(tuple, s.tolist())))


CASES = {
    "cubic": (np.eye(3) * 5.0, [True, True, True], 12),
    "small triclinic (own images)": (np.array([[2.1, 0, 0], [0.7, 2.3, 0], [0.3, 0.4, 2.2]]), [True] * 3, 3),
    "slab (mixed pbc)": (np.array([[3.0, 0, 0], [0.5, 3.1, 0], [0, 0, 20.0]]), [True, True, False], 5),
    "wire": (np.array([[2.5, 0, 0], [0, 10, 0], [0, 0, 10]]), [True, False, False], 4),
    "molecule": (np.zeros((3, 3)), [False] * 3, 9),
}


@pytest.mark.parametrize("name", CASES)
def test_neighbour_list_matches_brute_force(name):
    cell, pbc, n = CASES[name]
    rng = np.random.default_rng(5)
    positions = rng.random((n, 3)) @ (cell if np.any(pbc) else np.eye(3) * 4.0)
    cutoff = 3.7
    fast = as_set(*neighbour_list(positions, cell, np.array(pbc), cutoff))
    slow = as_set(*brute_force_neighbour_list(positions, cell, np.array(pbc), cutoff))
    assert fast == slow
    assert len(fast) > 0
