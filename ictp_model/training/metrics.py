"""Error metrics: energy (meV, meV/atom), forces (meV/Å) and stress (meV/Å³) RMSE and MAE,
overall and per config_type."""

import math
from collections import defaultdict

import numpy as np


class ErrorAccumulator:
    """Collects per-structure errors (in eV units) and reports metrics in meV units."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))

    def add(self, config_type: str, energy_error: float, num_atoms: int, force_errors=None, stress_error=None) -> None:
        for name in ("all", config_type) if config_type != "all" else ("all",):
            g = self.groups[name]
            g["energy"].append(energy_error)
            g["energy_per_atom"].append(energy_error / num_atoms)
            if force_errors is not None and len(force_errors):
                g["forces"].append(np.asarray(force_errors).reshape(-1))
            if stress_error is not None:
                g["stress"].append(np.asarray(stress_error).reshape(-1))

    @staticmethod
    def _summary(values: list) -> tuple[float, float]:
        if not values:
            return math.nan, math.nan
        v = np.concatenate([np.atleast_1d(x) for x in values]) * 1000.0
        return float(np.sqrt(np.mean(v**2))), float(np.mean(np.abs(v)))

    def metrics(self, group: str = "all") -> dict[str, float]:
        g = self.groups[group]
        e_rmse, e_mae = self._summary(g["energy"])
        ea_rmse, ea_mae = self._summary(g["energy_per_atom"])
        f_rmse, f_mae = self._summary(g["forces"])
        s_rmse, s_mae = self._summary(g["stress"])
        return {
            "n_structures": len(g["energy"]),
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
