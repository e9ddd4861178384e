"""Training-set statistics: E0s (isolated atoms, a dict, or least squares), the average number of
neighbours n̄ and the force RMS used as the energy scale."""

import numpy as np
from ase.data import chemical_symbols

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


def e0s_least_squares(samples: list[Sample], elements: list[str]) -> dict[str, float]:
    """E0 per element minimising Σ (E - Σ_Z n_Z E0_Z)² over the structures (MACE's "average")."""
    counts = np.zeros((len(samples), len(elements)))
    energies = np.array([s.energy for s in samples], dtype=np.float64)
    index = {e: i for i, e in enumerate(elements)}
    for row, s in enumerate(samples):
        for symbol in s.atoms.get_chemical_symbols():
            counts[row, index[symbol]] += 1
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return {e: float(v) for e, v in zip(elements, solution)}


def average_num_neighbors(graphs: list[AtomicGraph]) -> float:
    """Mean number of neighbours within the cutoff over all atoms (n̄ divides the neighbour sum)."""
    atoms = sum(g.num_nodes for g in graphs)
    edges = sum(g.num_edges for g in graphs)
    return max(edges / max(atoms, 1), 1.0)


def force_rms(samples: list[Sample]) -> float:
    """RMS of all force components (the energy scale s of the model); 1.0 without forces."""
    values = [s.forces.reshape(-1) for s in samples if s.forces is not None]
    if not values:
        return 1.0
    rms = float(np.sqrt(np.mean(np.concatenate(values) ** 2)))
    return rms if rms > 1e-8 else 1.0


def elements_in(samples: list[Sample]) -> list[str]:
    """Chemical symbols present, ordered by atomic number."""
    numbers = sorted({int(z) for s in samples for z in s.atoms.numbers})
    return [chemical_symbols[z] for z in numbers]


def check_elements(samples: list[Sample], elements: list[str]) -> None:
    """Raise DataError at the first structure holding an element the model does not know."""
    known = set(elements)
    for s in samples:
        unknown = sorted(set(s.atoms.get_chemical_symbols()) - known)
        if unknown:
            raise DataError(
                f"{s.source}: frame {s.frame}: key 'numbers': elements {unknown} are not in the model's {elements}"
            )
