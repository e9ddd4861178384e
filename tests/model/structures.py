"""Small structures and models shared by the model tests (float64 throughout)."""

import numpy as np
import torch
from ase import Atoms
from ase.build import molecule

from ictp_model.data.graph import collate, graph_from_atoms
from ictp_model.model import build_model, compute_properties

ELEMENTS = ["H", "C", "N", "O"]
VARIANTS = ["full", "sym", "sym+lt"]


def small_model(seed: int = 0, **overrides):
    """A small model that still exercises every feature: L = 2, l_max = 3, ν = 3, 2 layers."""
    torch.manual_seed(seed)
    config = dict(
        elements=ELEMENTS,
        cutoff=3.5,
        channels=4,
        max_rank=2,
        edge_rank=3,
        correlation=3,
        layers=2,
        radial_mlp=[8, 8],
        avg_num_neighbors=6.0,
        atomic_energies={"H": -1.5, "C": -2.0, "N": -3.0, "O": -4.5},
        scale=1.3,
        dtype="float64",
    )
    config.update(overrides)
    return build_model(config)


def organic_molecule() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.append("N")
    atoms.positions[-1] = [1.7, 1.1, 0.4]
    atoms.rattle(0.05, seed=3)
    return atoms


def triclinic_cell() -> Atoms:
    """A periodic triclinic cell smaller than twice the cutoff, so atoms see their own images."""
    rng = np.random.default_rng(7)
    cell = np.array([[3.6, 0.0, 0.0], [0.9, 3.4, 0.0], [0.4, 0.6, 3.8]])
    frac = rng.random((6, 3))
    return Atoms("HCNOCH", scaled_positions=frac, cell=cell, pbc=True)


def slab() -> Atoms:
    rng = np.random.default_rng(11)
    cell = np.array([[4.0, 0.0, 0.0], [1.0, 3.9, 0.0], [0.0, 0.0, 12.0]])
    pos = np.c_[rng.random((5, 2)) * 3.5, 5.0 + rng.random(5) * 1.5]
    return Atoms("CCOHN", positions=pos, cell=cell, pbc=[True, True, False])


def evaluate(model, atoms: Atoms, stress: bool = False):
    graph = graph_from_atoms(atoms, model.cutoff)
    out = compute_properties(model, graph, forces=True, stress=stress)
    return {k: v.detach() for k, v in out.items()}


def evaluate_many(model, structures, stress: bool = False):
    graph = collate([graph_from_atoms(a, model.cutoff) for a in structures])
    out = compute_properties(model, graph, forces=True, stress=stress)
    return {k: v.detach() for k, v in out.items()}, graph
