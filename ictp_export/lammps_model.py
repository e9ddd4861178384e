"""The module that `pair_style ictp` runs through libtorch: the one documented interface.

Attributes (read by the C++ side after torch::jit::load):
    format_version (int)   this interface's version, currently 2 (1: no memory_mb argument)
    cutoff (float)         radial cutoff r_c in Å
    num_layers (int)       message-passing layers T; ghost atoms must reach T · r_c
    elements (List[str])   chemical symbols in the model's species order
    dtype (str)            "float64" or "float32": the precision the network runs in
    config (str)           the model's hyperparameters as JSON (for provenance)

forward(positions, species, edge_index, shifts, receivers, compute_virial, memory_mb) -> Dict[str, Tensor]
    positions   (N, 3)     float64   the atoms that take part (Å), ordered by their distance in
                                     layers from the local atoms: local atoms first (level 0),
                                     then ghosts of level 1 (within r_c of a local atom), …, up to
                                     level T; ghosts farther away are left out
    species     (N,)       int64     index into `elements` for every atom
    edge_index  (2, E)     int64     row 0: centre atom i, row 1: neighbour j; every pair with
                                     |r_j - r_i| < cutoff whose centre has level <= T - 1, sorted
                                     by centre
    shifts      (E, 3)     float64   added to r_j - r_i: the offset of the neighbour's periodic
                                     image when j stands for an image (zeros for plain ghosts)
    receivers   List[int]            receivers[t] = number of atoms of level <= T - 1 - t: the
                                     atoms that layer t must update; receivers[-1] = local atoms
    compute_virial bool              also return the virials
    memory_mb   float                working-memory budget (MiB) of the evaluation: atoms are
                                     processed in chunks of receivers whose edges fit in it
                                     (ictp_model.model.bounded); <= 0 takes DEFAULT_MEMORY_MB
  returns (all float64):
    energy      ()          Σ of the per-atom energies of the local atoms (eV)
    node_energy (nlocal,)   per-atom energies of the local atoms (eV)
    forces      (N, 3)      -∂energy/∂r for every atom; ghost forces must be reverse-communicated
    virial      (3, 3)      W = -Σ_edges r_ij ⊗ ∂energy/∂r_ij (eV), only with compute_virial
    atom_virial (N, 3, 3)   each edge's term split half to i and half to j, only with compute_virial

With receivers = [N] * T and nlocal = N, every atom is updated in every layer: that is also a
valid call (used by the tests on plain graphs).

Edge vectors are formed in float64 and only then cast to the model's dtype, so a float32 model
keeps their low bits in a box far from the origin.  Forces and virials come from the same
edge-gradient formulas as the Python path (:mod:`ictp_model.model.potential`), so LAMMPS and the
ASE calculator share one derivation.
"""

import json

import torch
from torch import Tensor

from ictp_model.model.bounded import BoundedEvaluation
from ictp_model.model.config import ModelConfig
from ictp_model.model.network import ICTPNetwork
from ictp_model.model.potential import edge_virials, forces_from_edges

FORMAT_VERSION = 2
OUTPUTS = ("energy", "node_energy", "forces", "virial", "atom_virial")  # (the order of the compiled outputs)


def interface_attributes(config: ModelConfig) -> dict:
    """The attributes of the module docstring, from the model's config (also the .pt2's metadata)."""
    return {
        "format_version": FORMAT_VERSION,
        "cutoff": float(config.cutoff),
        "num_layers": int(config.layers),
        "elements": list(config.elements),
        "dtype": str(config.dtype),
        "config": json.dumps(config.to_dict()),
    }


class LAMMPSModel(torch.nn.Module):
    elements: list[str]

    def __init__(self, network: ICTPNetwork):
        super().__init__()
        self.evaluation = BoundedEvaluation(network)  # holds the network
        for name, value in interface_attributes(network.config).items():
            setattr(self, name, value)

    def forward(
        self,
        positions: Tensor,
        species: Tensor,
        edge_index: Tensor,
        shifts: Tensor,
        receivers: list[int],
        compute_virial: bool,
        memory_mb: float = 0.0,
    ) -> dict[str, Tensor]:
        vectors = edge_vectors(positions, edge_index, shifts, self.evaluation.network.embedding.dtype)
        max_edges = self.evaluation.chunk_edges(memory_mb)
        node_energy, gradients = self.evaluation(species, edge_index, vectors, receivers, max_edges)
        return interface_outputs(node_energy, gradients, vectors, edge_index, positions.shape[0], compute_virial)


def edge_vectors(positions: Tensor, edge_index: Tensor, shifts: Tensor, dtype: torch.dtype) -> Tensor:
    """r_j - r_i + shift for every edge, formed in float64 and then cast to the model's dtype.
    Shapes: (N, 3), (2, E), (E, 3) -> (E, 3)."""
    positions = positions.double()
    vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + shifts.double()
    return vectors.to(dtype)


def layer_edge_counts(edge_index: Tensor, receivers: list[int]) -> list[int]:
    """For each count in receivers, the number of edges centred on the first that many atoms (a
    prefix: edges are sorted by centre), e.g. the edges layer t needs."""
    bounds = torch.tensor(receivers, dtype=edge_index.dtype, device=edge_index.device)
    return torch.searchsorted(edge_index[0].contiguous(), bounds).tolist()


def interface_outputs(
    node_energy: Tensor, gradients: Tensor, vectors: Tensor, edge_index: Tensor, num_atoms: int, compute_virial: bool
) -> dict[str, Tensor]:
    """The interface's results (see the module docstring) from the per-atom energies and
    g = ∂E/∂vectors; shared by the TorchScript and the compiled export."""
    out = {
        "energy": node_energy.sum().detach().double(),
        "node_energy": node_energy.detach().double(),
        "forces": forces_from_edges(gradients, edge_index, num_atoms).double(),
    }
    if compute_virial:
        per_edge = edge_virials(gradients, vectors).double()
        atom_virial = torch.zeros(num_atoms, 3, 3, dtype=torch.float64, device=vectors.device)
        atom_virial = atom_virial.index_add(0, edge_index[0], 0.5 * per_edge).index_add(
            0, edge_index[1], 0.5 * per_edge
        )
        out["virial"] = per_edge.sum(0)
        out["atom_virial"] = atom_virial
    return out
