"""The per-element energy shift, fitted by least squares instead of learned by gradient steps.

With forces dominating the loss (w_F ≫ w_E, as in every published MLIP recipe), a constant energy
offset is the slowest thing a network learns: its gradient is one number per element against
thousands of force components. Left to the optimiser, the offset is learned late, and the best
epoch chosen by a force-dominated validation loss may predate it, so a saved model's energies can
all be off by the same amount. The shift μ_Z enters the energy linearly, E = Σ_i (… + μ_{Z_i}), so
its best value given everything else is a weighted least-squares problem:

    δ = argmin Σ_g w_g (E_g^ref - E_g - Σ_Z n_gZ δ_Z)²,   w_g = 1/N_g² (per_atom), 1/N_g (sqrt_atoms), 1 (total)

which is exactly the minimum of the loss's energy term over δ. It is accumulated from the
energies the training steps compute anyway (no extra pass) and applied at each epoch end, and
solved once more, exactly, for the model that is saved.
"""

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ictp_model.data.graph import AtomicGraph

from .distributed import SINGLE, Ranks, all_reduce_sum


class ShiftFit:
    """Normal equations of the shift correction δ over the structures added since the last reset."""

    def __init__(self, num_species: int, energy_mode: str):
        self.num_species, self.energy_mode = num_species, energy_mode
        self.reset()

    def reset(self) -> None:
        self.gram = torch.zeros(self.num_species, self.num_species, dtype=torch.float64)
        self.moment = torch.zeros(self.num_species, dtype=torch.float64)

    def add(self, graph: AtomicGraph, species: Tensor, energy: Tensor) -> None:
        """A batch's residuals E_ref - E (energy detached here)."""
        if graph.energy is None:
            return
        counts = torch.zeros(graph.num_graphs, self.num_species, dtype=torch.float64, device=species.device)
        counts.index_put_((graph.batch, species), torch.ones_like(species, dtype=torch.float64), accumulate=True)
        residual = (graph.energy - energy.detach()).double()
        atoms = counts.sum(1)
        weight = {"per_atom": atoms**-2, "sqrt_atoms": atoms**-1, "total": torch.ones_like(atoms)}[self.energy_mode]
        if graph.weight is not None:
            weight = weight * graph.weight.double()
        if self.gram.device != counts.device:  # sums stay where the batches are (no copy per step)
            self.gram, self.moment = self.gram.to(counts.device), self.moment.to(counts.device)
        self.gram += (counts.T * weight) @ counts
        self.moment += (counts.T * weight) @ residual

    def solve(self, ranks: Ranks = SINGLE) -> Optional[Tensor]:
        """δ (S,) in float64, the minimum-norm solution (elements that never occur get 0); None
        without structures."""
        total = all_reduce_sum(torch.cat([self.gram.reshape(-1), self.moment]), ranks).cpu()
        s = self.num_species
        gram, moment = total[: s * s].reshape(s, s).numpy(), total[s * s :].numpy()
        if not np.any(gram):
            return None
        solution, *_ = np.linalg.lstsq(gram, moment, rcond=None)
        return torch.from_numpy(solution)


def apply_shift(modules: list[torch.nn.Module], delta: Optional[Tensor]) -> None:
    """Add δ to the energy shift of each model (the trained one and its EMA copy)."""
    if delta is None:
        return
    for module in modules:
        module.energy_shift += delta.to(module.energy_shift.device, module.energy_shift.dtype)
