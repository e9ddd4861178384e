"""The atom ordering `pair_style ictp` hands to the exported model, in Python (the C++ pair style
does the same; the tests use this to check the scheme without LAMMPS).

Level of an atom = its distance in layers from the local atoms: local atoms 0, atoms within one
cutoff of a level-0 atom 1, and so on up to the number of layers T.  Layer t only has to update
atoms of level <= T - 1 - t, and atoms beyond level T are not needed at all.
"""

import numpy as np


def order_by_level(nlocal: int, centres: np.ndarray, neighbours: np.ndarray, num_atoms: int, layers: int):
    """Returns (order, edge_index, receivers): ``order`` lists the atoms that take part (new index ->
    old index), ``edge_index`` (2, E) holds the needed edges in new indices sorted by centre, and
    ``receivers[t]`` is the number of atoms layer t updates.

    centres, neighbours: all pairs within the cutoff (both directions), in old indices.
    """
    level = np.full(num_atoms, np.iinfo(np.int64).max)
    level[:nlocal] = 0
    for t in range(1, layers + 1):
        frontier = level[centres] == t - 1
        reached = neighbours[frontier]
        level[reached] = np.minimum(level[reached], t)
    order = np.concatenate([np.nonzero(level == t)[0] for t in range(layers + 1)])
    new_index = np.full(num_atoms, -1)
    new_index[order] = np.arange(len(order))
    needed = level[centres] <= layers - 1
    i, j = new_index[centres[needed]], new_index[neighbours[needed]]
    sort = np.argsort(i, kind="stable")
    receivers = [int((level <= layers - 1 - t).sum()) for t in range(layers)]
    return order, np.stack([i[sort], j[sort]]), receivers
