"""Error metrics: energy (meV, meV/atom), forces (meV/Å) and stress (meV/Å³) RMSE and MAE,
overall and per config_type."""

import math

import numpy as np

QUANTITIES = ("energy", "energy_per_atom", "forces", "stress")


class ErrorAccumulator:
    """Running sums of per-structure errors (in eV units), reported in meV units.

    Memory does not grow with the data set: each group (all, and one per config_type) keeps a
    count, a sum of squares and a sum of absolute values per quantity. Accumulators of disjoint
    parts (e.g. the ranks of a distributed run) add up with `merge`.
    """

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, np.ndarray]] = {}

    def _group(self, name: str) -> dict[str, np.ndarray]:
        if name not in self.groups:
            self.groups[name] = {q: np.zeros(3) for q in QUANTITIES}
        return self.groups[name]

    def add(self, config_type: str, energy_error: float, num_atoms: int, force_errors=None, stress_error=None) -> None:
        values = {"energy": np.atleast_1d(energy_error), "energy_per_atom": np.atleast_1d(energy_error / num_atoms)}
        if force_errors is not None and len(force_errors):
            values["forces"] = np.asarray(force_errors, dtype=np.float64).reshape(-1)
        if stress_error is not None:
            values["stress"] = np.asarray(stress_error, dtype=np.float64).reshape(-1)
        for name in ("all", config_type) if config_type != "all" else ("all",):
            group = self._group(name)
            for quantity, v in values.items():
                group[quantity] += (v.size, float(np.sum(v**2)), float(np.sum(np.abs(v))))

    def merge(self, other: "ErrorAccumulator") -> None:
        for name, group in other.groups.items():
            mine = self._group(name)
            for quantity, sums in group.items():
                mine[quantity] += sums

    def metrics(self, group: str = "all") -> dict[str, float]:
        g = self.groups.get(group) or {q: np.zeros(3) for q in QUANTITIES}

        def rmse_mae(quantity: str) -> tuple[float, float]:
            count, squares, absolute = g[quantity]
            if count == 0:
                return math.nan, math.nan
            return 1000.0 * math.sqrt(squares / count), 1000.0 * absolute / count

        e_rmse, e_mae = rmse_mae("energy")
        ea_rmse, ea_mae = rmse_mae("energy_per_atom")
        f_rmse, f_mae = rmse_mae("forces")
        s_rmse, s_mae = rmse_mae("stress")
        return {
            "n_structures": int(g["energy"][0]),
            "energy_rmse": e_rmse,
            "energy_mae": e_mae,
            "energy_per_atom_rmse": ea_rmse,
            "energy_per_atom_mae": ea_mae,
            "forces_rmse": f_rmse,
            "forces_mae": f_mae,
            "stress_rmse": s_rmse,
            "stress_mae": s_mae,
        }

    def all_metrics(self) -> dict[str, dict[str, float]]:
        return {name: self.metrics(name) for name in self.groups}


COLUMNS = [
    ("n", "n_structures"),
    ("E RMSE meV", "energy_rmse"),
    ("E MAE meV", "energy_mae"),
    ("E/atom RMSE", "energy_per_atom_rmse"),
    ("F RMSE meV/A", "forces_rmse"),
    ("F MAE meV/A", "forces_mae"),
    ("S RMSE meV/A3", "stress_rmse"),
]


def format_table(results: dict[str, dict[str, float]], title: str = "") -> str:
    """A plain-text table: one row per group, energies in meV and meV/atom, forces in meV/Å."""
    width = max([len(k) for k in results] + [5])
    lines = [title] if title else []
    lines.append(f"{'set':<{width}} " + " ".join(f"{name:>13}" for name, _ in COLUMNS))
    for group, m in results.items():
        cells = []
        for _, key in COLUMNS:
            value = m[key]
            if key == "n_structures":
                cells.append(f"{value:>13d}")
            elif isinstance(value, float) and math.isnan(value):
                cells.append(f"{'-':>13}")
            else:
                cells.append(f"{value:>13.3f}")
        lines.append(f"{group:<{width}} " + " ".join(cells))
    return "\n".join(lines)
