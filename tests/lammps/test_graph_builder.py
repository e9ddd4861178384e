"""The C++ graph builder of pair_style ictp (pair_ictp/graph_builder.h, through its pybind11
binding) against a brute-force reference: owners, levels, order, receivers, edges and shifts on
one rank, on a rank that shares its cell with another, and on a rank without atoms; and the
exported model on its output equals the periodic calculation."""

import itertools

import numpy as np
import pytest
import torch

from ictp_export import export_model, load_exported
from ictp_model.data.graph import graph_from_atoms
from ictp_model.model import compute_properties
from ictp_model.model.potential import species_index

from ..model.structures import small_model, triclinic_cell

CUTOFF, LAYERS, SKIN = 3.5, 2, 0.7


@pytest.fixture(scope="module")
def builder(plugin):
    from ictp_export.plugin import graph_module

    return graph_module().build_graph


def images_within(atoms, local: np.ndarray, reach: float):
    """What LAMMPS gives a rank that owns the atoms ``local`` (indices into atoms): those atoms
    first, then every other atom or periodic image within ``reach`` of them.  Returns positions
    (nall, 3), tags (nall,) and nlocal."""
    cell, n = atoms.cell[:], len(atoms)
    shifts = [np.asarray(s) for s in itertools.product(range(-4, 5), repeat=3)]
    positions = np.concatenate([atoms.positions + s @ cell for s in shifts])
    tags = np.tile(np.arange(1, n + 1), len(shifts))
    is_local = np.zeros(len(positions), bool)
    home = next(k for k, s in enumerate(shifts) if not s.any())  # the cell itself
    is_local[home * n + local] = True
    if len(local):
        near = np.linalg.norm(positions[:, None] - positions[is_local][None], axis=-1).min(1) < reach
    else:  # a rank without atoms still sees ghosts near its (here: the cell's first atom's) region
        near = np.linalg.norm(positions - atoms.positions[0], axis=-1) < reach
    ghosts = np.nonzero(near & ~is_local)[0]
    keep = np.concatenate([np.nonzero(is_local)[0], ghosts])
    return positions[keep], tags[keep], int(is_local.sum())


def full_list(positions, rng):
    """Every atom's neighbours within cutoff + skin, in a random order (CSR)."""
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    rows = [rng.permutation(np.nonzero((d[i] < CUTOFF + SKIN) & (np.arange(len(d)) != i))[0]) for i in range(len(d))]
    centres = rng.permutation(len(d))
    offsets = np.concatenate([[0], np.cumsum([len(rows[c]) for c in centres])])
    indices = np.concatenate([rows[c] for c in centres]) if len(d) else np.zeros(0, np.int64)
    return centres, offsets, indices


def reference(positions, tags, nlocal, map_images):
    """The graph by its definition, from the dense distance matrix."""
    nall = len(positions)
    local_of = {int(t): i for i, t in enumerate(tags[:nlocal])}
    owner = np.array([local_of.get(int(t), k) if (map_images and k >= nlocal) else k for k, t in enumerate(tags)])
    close = np.linalg.norm(positions[:, None] - positions[None], axis=-1) < CUTOFF
    np.fill_diagonal(close, False)
    level = np.full(nall, -1)
    level[:nlocal] = 0
    for t in range(1, LAYERS + 1):
        frontier = (level == t - 1) & (owner == np.arange(nall))
        reached = np.unique(owner[np.nonzero(close[frontier].any(0))[0]])
        fresh = reached[level[reached] < 0]
        level[fresh] = t
    representatives = np.nonzero((owner == np.arange(nall)) & (level >= 0))[0]
    order = representatives[np.lexsort((representatives, level[representatives]))]
    new = {int(a): k for k, a in enumerate(order)}
    receivers = [
        int(((level >= 0) & (level <= LAYERS - 1 - t) & (owner == np.arange(nall))).sum()) for t in range(LAYERS)
    ]
    edges = set()
    for a in order[level[order] <= LAYERS - 1]:
        for j in np.nonzero(close[a])[0]:
            shift = positions[j] - positions[owner[j]]
            edges.add((new[int(a)], new[int(owner[j])], *np.round(shift, 9)))
    return {"owner": owner, "level": level, "order": order, "receivers": receivers, "edges": edges}


def edge_set(out):
    e, s = out["edge_index"], out["shifts"]
    return {(int(e[0, k]), int(e[1, k]), *np.round(s[k], 9)) for k in range(e.shape[1])}


CASES = {
    "one rank": (lambda n: np.arange(n), True),
    "one rank, no atom map": (lambda n: np.arange(n), False),
    "half of the cell": (lambda n: np.arange(n // 2), True),
    "no atoms": (lambda n: np.arange(0), True),
}


@pytest.mark.parametrize("case", CASES)
def test_builder_equals_the_definition(builder, case):
    atoms = triclinic_cell()
    local, map_images = CASES[case]
    positions, tags, nlocal = images_within(atoms, local(len(atoms)), LAYERS * CUTOFF + SKIN)
    rng = np.random.default_rng(5)
    out = builder(positions, tags, nlocal, *full_list(positions, rng), CUTOFF, LAYERS, map_images)
    ref = reference(positions, tags, nlocal, map_images)
    np.testing.assert_array_equal(out["owner"], ref["owner"])
    np.testing.assert_array_equal(out["level"], ref["level"])
    np.testing.assert_array_equal(out["order"], ref["order"])
    assert list(out["receivers"]) == ref["receivers"]
    centres = out["edge_index"][0]
    assert np.all(np.diff(centres) >= 0)  # sorted by centre, as the model requires
    assert edge_set(out) == ref["edges"] and len(edge_set(out)) == out["edge_index"].shape[1]
    if case == "one rank":  # every ghost is an image of a local atom and replaced by it
        assert len(out["order"]) == nlocal == len(atoms) and (out["shifts"] != 0).any()
    elif nlocal:  # ghosts take part: layer 0 updates those within reach, the last only local atoms
        assert out["receivers"][-1] == nlocal < out["receivers"][0] < len(out["order"]) < len(positions)
    else:
        assert out["edge_index"].shape[1] == 0 and len(out["order"]) == 0


def test_overlapping_atoms_and_missing_lists_are_errors(builder):
    positions = np.array([[0.0, 0, 0], [0.05, 0, 0], [2.0, 0, 0]])
    tags = np.array([1, 2, 3])
    centres, offsets, indices = np.array([0, 1, 2]), np.array([0, 2, 4, 6]), np.array([1, 2, 0, 2, 0, 1])
    with pytest.raises(ValueError, match="atoms 0 and 1 overlap"):
        builder(positions, tags, 3, centres, offsets, indices, CUTOFF, LAYERS)
    positions[1, 0] = 1.0
    with pytest.raises(ValueError, match="atom 2 has no neighbour list"):
        builder(positions, tags, 3, centres[:2], offsets[:3], indices[:4], CUTOFF, LAYERS)


@pytest.mark.parametrize("map_images", [True, False], ids=["images mapped to owners", "images as atoms"])
@pytest.mark.parametrize("memory_mb", [0.0, 0.05], ids=["plain", "chunked"])
def test_exported_model_on_the_builders_graph_equals_the_periodic_result(builder, tmp_path, map_images, memory_mb):
    """What the pair style does on one rank, and as if every image were another rank's atom."""
    model = small_model(variant="full", odd=True, cutoff=CUTOFF)
    exported = load_exported(export_model(model, tmp_path / "model-lammps.pt"))
    atoms = triclinic_cell()
    n = len(atoms)
    positions, tags, nlocal = images_within(atoms, np.arange(n), LAYERS * CUTOFF + SKIN)
    out = builder(positions, tags, nlocal, *full_list(positions, np.random.default_rng(0)), CUTOFF, LAYERS, map_images)
    order = out["order"]
    species = species_index(model.z_to_index, torch.as_tensor(atoms.numbers[tags[order] - 1]))
    result = exported(
        torch.as_tensor(positions[order]),
        species,
        torch.as_tensor(out["edge_index"]),
        torch.as_tensor(out["shifts"]),
        [int(r) for r in out["receivers"]],
        True,
        memory_mb,
    )
    ref = compute_properties(model, graph_from_atoms(atoms, model.cutoff), forces=True, stress=True)
    folded = torch.zeros(n, 3, dtype=torch.float64).index_add(0, torch.as_tensor(tags[order] - 1), result["forces"])
    assert torch.allclose(result["energy"], ref["energy"][0], rtol=1e-10, atol=1e-12)
    assert torch.allclose(result["node_energy"], ref["node_energy"], rtol=1e-10, atol=1e-12)
    assert torch.allclose(folded, ref["forces"], rtol=1e-10, atol=1e-12)
    assert torch.allclose(result["virial"], ref["virial"][0], rtol=1e-10, atol=1e-12)
