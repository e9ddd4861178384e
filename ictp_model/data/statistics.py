"""Training-set statistics: E0s (isolated atoms, a dict, or least squares), the average number of
neighbours n̄ and the force RMS used as the energy scale."""

from typing import Optional

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from .graph import AtomicGraph
from .io import DataError, Sample


def e0s_from_isolated_atoms(samples: list[Sample]) -> dict[str, float]:
    """{symbol: energy} from single-atom frames (any config_type when all frames are single atoms,
    e.g. a file of isolated atoms; otherwise only config_type=IsolatedAtom)."""
    singles = [s for s in samples if len(s.atoms) == 1]
    chosen = singles if len(singles) == len(samples) else [s for s in samples if s.is_isolated_atom]
    out: dict[str, float] = {}
    for s in chosen:
        out[s.atoms.get_chemical_symbols()[0]] = float(s.energy)
    return out


class RunningStatistics:
    """Training-set statistics accumulated one structure at a time (for data sets streamed from
    disk): least-squares E0s from the normal equations, force RMS, mean neighbour count."""

    def __init__(self) -> None:
        self.gram = np.zeros((119, 119))  # Σ_structures n_Z n_Z'
        self.moment = np.zeros(119)  # Σ_structures n_Z E
        self.force_squares, self.force_components = 0.0, 0
        self.atoms, self.edges = 0, 0

    def add(self, sample: Sample, num_edges: int = 0) -> None:
        counts = np.bincount(sample.atoms.numbers, minlength=119).astype(np.float64)
        self.gram += np.outer(counts, counts)
        self.moment += counts * sample.energy
        if sample.forces is not None:
            self.force_squares += float(np.sum(sample.forces**2))
            self.force_components += sample.forces.size
        self.atoms += len(sample.atoms)
        self.edges += num_edges

    def e0s(self, elements: list[str]) -> dict[str, float]:
        """E0 per element minimising Σ (E - Σ_Z n_Z E0_Z)² (the minimum-norm solution when the
        compositions do not determine every E0, e.g. one molecule)."""
        z = [atomic_numbers[e] for e in elements]
        solution, *_ = np.linalg.lstsq(self.gram[np.ix_(z, z)], self.moment[z], rcond=None)
        return {e: float(v) for e, v in zip(elements, solution)}

    def force_rms(self) -> float:
        if self.force_components == 0:
            return 1.0
        rms = float(np.sqrt(self.force_squares / self.force_components))
        return rms if rms > 1e-8 else 1.0

    def avg_num_neighbors(self) -> float:
        return max(self.edges / max(self.atoms, 1), 1.0)


def _running(samples: list[Sample]) -> RunningStatistics:
    stats = RunningStatistics()
    for s in samples:
        stats.add(s)
    return stats


def e0s_least_squares(samples: list[Sample], elements: list[str]) -> dict[str, float]:
    """E0 per element minimising Σ (E - Σ_Z n_Z E0_Z)² over the structures (MACE's "average")."""
    return _running(samples).e0s(elements)


def average_num_neighbors(graphs: list[AtomicGraph]) -> float:
    """Mean number of neighbours within the cutoff over all atoms (n̄ divides the neighbour sum)."""
    atoms = sum(g.num_nodes for g in graphs)
    edges = sum(g.num_edges for g in graphs)
    return max(edges / max(atoms, 1), 1.0)


def force_rms(samples: list[Sample]) -> float:
    """RMS of all force components (the energy scale s of the model); 1.0 without forces."""
    return _running(samples).force_rms()


def elements_in(samples: list[Sample]) -> list[str]:
    """Chemical symbols present, ordered by atomic number."""
    numbers = sorted({int(z) for s in samples for z in s.atoms.numbers})
    return [chemical_symbols[z] for z in numbers]


def check_elements(samples: list[Sample], elements: list[str]) -> None:
    """Raise DataError at the first structure holding an element the model does not know."""
    for s in samples:
        check_symbols(s.atoms.get_chemical_symbols(), elements, s.source, s.frame)


def check_symbols(symbols, elements: list[str], where, frame: Optional[int] = None) -> None:
    """Raise DataError naming ``where`` (and the frame) if ``symbols`` hold elements not in ``elements``."""
    unknown = sorted(set(symbols) - set(elements))
    if unknown:
        raise DataError.at(where, f"elements {unknown} are not in the model's {elements}", frame=frame, key="numbers")
