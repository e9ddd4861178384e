"""ICTPCalculator: evaluate an ICTP model on ase.Atoms (energy, free_energy, forces, stress,
per-atom energies).  This is the reference path that the LAMMPS pair style is checked against."""

from pathlib import Path
from typing import Optional, Union

import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ictp_model.data.graph import graph_from_atoms
from ictp_model.model.io import load_model
from ictp_model.model.network import ICTPNetwork
from ictp_model.model.potential import compute_properties


class ICTPCalculator(Calculator):
    """ASE calculator for an ICTP model.

    Args:
        model_or_path: an ICTP model or the path of a file written by ``save_model``.
        device: torch device to evaluate on.

    Results: ``energy`` and ``free_energy`` (eV), ``forces`` (eV/Å), ``energies`` (per atom, eV)
    and, for periodic structures with a finite cell, ``stress`` (eV/Å³, Voigt order, ASE sign).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(
        self, model_or_path: Union[ICTPNetwork, str, Path], device: Union[str, torch.device] = "cpu", **kwargs
    ):
        super().__init__(**kwargs)
        model = load_model(model_or_path) if isinstance(model_or_path, (str, Path)) else model_or_path
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.dtype = self.model.embedding.dtype

    @property
    def cutoff(self) -> float:
        return float(self.model.cutoff)

    def calculate(self, atoms: Optional[Atoms] = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        periodic = bool(atoms.pbc.any()) and abs(atoms.cell.volume) > 1e-12
        graph = graph_from_atoms(atoms, self.cutoff, dtype=self.dtype).to(self.device)
        out = compute_properties(self.model, graph, forces=True, stress=periodic)
        energy = float(out["energy"][0].detach())
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["node_energy"].detach().cpu().double().numpy(),
            "forces": out["forces"].detach().cpu().double().numpy(),
        }
        if periodic:
            stress = out["stress"][0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
