"""ICTPCalculator: evaluate an ICTP model (or a committee of models) on ase.Atoms.

Results: energy, free_energy, forces, stress (periodic cells), per-atom energies, and for a
committee energy_std and forces_std.  This is the reference path that the LAMMPS pair style is
checked against, and what `ictp md`, ase.md, ase.optimize and FrechetCellFilter use.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ictp_model.data.graph import AtomicGraph, collate, graph_from_atoms
from ictp_model.data.neighbours import check_edge_lengths
from ictp_model.device import check_device
from ictp_model.model.build import build_model
from ictp_model.model.io import load_model
from ictp_model.model.network import ICTPNetwork
from ictp_model.model.potential import compute_properties

ModelLike = Union[ICTPNetwork, str, Path]


def _as_model(model: ModelLike, device: torch.device, dtype: Optional[str]):
    if isinstance(model, (str, Path)) and Path(model).suffix == ".pt2":  # compiled: as it was compiled
        from ictp_export.compiled import CompiledModel

        compiled = CompiledModel(model)
        if dtype is not None and dtype != compiled.dtype:
            raise ValueError(f"{model} was compiled for {compiled.dtype}; export it again for {dtype}")
        return compiled
    network = load_model(model) if isinstance(model, (str, Path)) else model
    if dtype is not None and dtype != network.config.dtype:  # a copy in the other precision
        converted = build_model(network.config, dtype=dtype)
        converted.load_state_dict(network.state_dict())
        network = converted
    network = network.to(device).eval()
    for p in network.parameters():
        p.requires_grad_(False)
    network.use_edge_kernel(device.type == "cpu")  # inference: the hand-written kernel where it builds
    return network


class NeighbourCache:
    """Reuses a neighbour list built with cutoff + skin while no atom has moved more than skin/2
    and the cell, periodicity and species are unchanged.  Edges beyond the cutoff are harmless:
    the envelope makes their contribution exactly zero."""

    def __init__(self, cutoff: float, skin: float):
        self.cutoff, self.skin = cutoff, skin
        self.reference: Optional[tuple] = None
        self.graph: Optional[AtomicGraph] = None
        self.builds = 0

    def graph_for(self, atoms: Atoms, dtype: torch.dtype) -> AtomicGraph:
        positions = atoms.get_positions()
        key = (atoms.numbers.tobytes(), np.asarray(atoms.cell[:]).tobytes(), atoms.pbc.tobytes(), dtype)
        if self.reference is not None and self.reference[0] == key:
            moved = np.linalg.norm(positions - self.reference[1], axis=1).max(initial=0.0)
            if moved < 0.5 * self.skin and self.graph is not None:
                edges = self.graph.edge_index.numpy()
                check_edge_lengths(positions, atoms.get_cell()[:], (edges[0], edges[1], self.graph.shifts.numpy()))
                return self.graph._replace(positions=torch.as_tensor(positions, dtype=dtype))
        self.graph = graph_from_atoms(atoms, self.cutoff + self.skin, dtype)
        self.reference = (key, positions.copy())
        self.builds += 1
        return self.graph


class ICTPCalculator(Calculator):
    """ASE calculator for an ICTP model or a committee of models.

    Args:
        model_or_path: a model, a model file, a compiled export (``.pt2``, from ``ictp export``;
            float64 positions, the device it was compiled for), or a list of those (a committee:
            results are the mean, plus energy_std (eV) and forces_std (eV/Å, per atom and component)).
        device: torch device.
        dtype: "float32" or "float64" to run in another precision than the model was saved in.
        skin: neighbour-list skin in Å; the list is rebuilt only when an atom moved > skin/2.
        memory_mb: working-memory budget of one evaluation in MiB (<= 0: the default,
            ictp_model.model.bounded.DEFAULT_MEMORY_MB).  A structure whose edges do not fit is
            evaluated in chunks of atoms (the same numbers, in bounded memory); smaller ones take
            the plain path.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies", "energy_std", "forces_std"]

    def __init__(
        self,
        model_or_path: Union[ModelLike, Sequence[ModelLike]],
        device: Union[str, torch.device] = "cpu",
        dtype: Optional[str] = None,
        skin: float = 0.5,
        memory_mb: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.device = torch.device(check_device(str(device)))
        many = isinstance(model_or_path, (list, tuple))
        models = list(model_or_path) if many else [model_or_path]
        if not models:
            raise ValueError("ICTPCalculator needs at least one model")
        self.models = [_as_model(m, self.device, dtype) for m in models]
        self.committee = many
        first = self.models[0].config
        for m in self.models[1:]:
            if m.config.elements != first.elements or m.config.cutoff != first.cutoff:
                raise ValueError("committee models must share elements and cutoff")
        self.compiled = [not isinstance(m, ICTPNetwork) for m in self.models]
        self.dtype = torch.float64 if self.compiled[0] else self.models[0].embedding.dtype
        self.neighbours = NeighbourCache(float(first.cutoff), skin)
        self.memory_mb = float(memory_mb)

    @property
    def model(self) -> ICTPNetwork:
        return self.models[0]

    @property
    def cutoff(self) -> float:
        return float(self.model.cutoff)

    def _check(self, atoms: Atoms) -> None:
        if not np.all(np.isfinite(atoms.get_positions())):
            raise ValueError("ICTPCalculator: atom positions contain NaN or inf")
        if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-12:
            raise ValueError("ICTPCalculator: a periodic cell with zero volume")
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(self.model.config.elements))
        if unknown:
            raise ValueError(
                f"ICTPCalculator: elements {unknown} are not known to the model ({self.model.config.elements})"
            )

    def _graph(self, atoms: Atoms) -> AtomicGraph:
        try:
            return graph_from_atoms(atoms, self.cutoff, self.dtype)
        except ValueError as exc:
            raise ValueError(f"ICTPCalculator: {exc}") from exc

    def _evaluate(self, graph: AtomicGraph, stress: bool) -> list[dict]:
        graph = graph.to(self.device)
        return [
            m.properties(graph, stress, self.memory_mb)
            if compiled
            else compute_properties(m, graph, forces=True, stress=stress, memory_mb=self.memory_mb)
            for m, compiled in zip(self.models, self.compiled)
        ]

    def _results(self, outputs: list[dict], index: int, atom_slice: slice, periodic: bool) -> dict:
        energies = np.array([float(o["energy"][index].detach()) for o in outputs])
        forces = np.stack([o["forces"][atom_slice].detach().cpu().double().numpy() for o in outputs])
        node = np.stack([o["node_energy"][atom_slice].detach().cpu().double().numpy() for o in outputs])
        results = {
            "energy": float(energies.mean()),
            "free_energy": float(energies.mean()),
            "energies": node.mean(0),
            "forces": forces.mean(0),
        }
        if periodic:
            stress = np.stack([o["stress"][index].detach().cpu().double().numpy() for o in outputs]).mean(0)
            results["stress"] = full_3x3_to_voigt_6_stress(stress)
        if self.committee:
            results["energy_std"] = float(energies.std())
            results["forces_std"] = forces.std(0)
        return results

    def calculate(self, atoms: Optional[Atoms] = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        self._check(self.atoms)
        periodic = bool(self.atoms.pbc.any())
        if len(self.atoms) == 0:  # nothing interacts: zero energy, no forces
            self.results = self._empty_results(periodic)
            return
        try:
            graph = self.neighbours.graph_for(self.atoms, self.dtype)
        except ValueError as exc:  # overlapping atoms, named
            raise ValueError(f"ICTPCalculator: {exc}") from exc
        outputs = self._evaluate(graph, periodic)
        self.results = self._results(outputs, 0, slice(None), periodic)

    def _empty_results(self, periodic: bool) -> dict:
        results = {"energy": 0.0, "free_energy": 0.0, "energies": np.zeros(0), "forces": np.zeros((0, 3))}
        if periodic:
            results["stress"] = np.zeros(6)
        if self.committee:
            results["energy_std"], results["forces_std"] = 0.0, np.zeros((0, 3))
        return results

    def calculate_batch(self, structures: Sequence[Atoms]) -> list[dict]:
        """Evaluate many structures in one batched call; returns one results dict per structure
        (the same keys as ``calculator.results``)."""
        for atoms in structures:
            self._check(atoms)
        graphs = [self._graph(a) for a in structures]
        periodic = any(bool(a.pbc.any()) for a in structures)
        outputs = self._evaluate(collate(graphs), periodic)
        results, start = [], 0
        for g, atoms in enumerate(structures):
            results.append(self._results(outputs, g, slice(start, start + len(atoms)), bool(atoms.pbc.any())))
            start += len(atoms)
        return results
