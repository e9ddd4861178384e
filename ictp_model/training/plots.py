"""Learning curve and parity plots (matplotlib, Agg backend, written atomically)."""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def learning_curve(history: list[dict], path: Path) -> None:
    if not history:
        return
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    axes[0].semilogy(epochs, [row["train_loss"] for row in history], label="train")
    axes[0].semilogy(epochs, [row["valid_loss"] for row in history], label="valid")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].semilogy(epochs, [row["valid_energy_rmse"] for row in history], label="E RMSE (meV/atom)")
    axes[1].semilogy(epochs, [row["valid_forces_rmse"] for row in history], label="F RMSE (meV/Å)")
    axes[1].set_xlabel("epoch")
    axes[1].legend()
    _save(fig, path)


def parity_plot(parity: dict, path: Path) -> None:
    """parity: {set name: (samples, predictions)}; energy per atom and force components."""
    if not parity:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, (samples, predictions) in parity.items():
        ref_e = np.array([s.energy / len(s.atoms) for s in samples])
        pred_e = np.array([p["energy"] / len(s.atoms) for s, p in zip(samples, predictions)])
        axes[0].scatter(ref_e, pred_e, s=6, label=name)
        ref_f = np.concatenate([s.forces.reshape(-1) for s in samples if s.forces is not None])
        pred_f = np.concatenate([p["forces"].reshape(-1) for s, p in zip(samples, predictions) if s.forces is not None])
        axes[1].scatter(ref_f, pred_f, s=3, label=name)
    for ax, label in zip(axes, ["energy per atom (eV)", "force component (eV/Å)"]):
        low, high = ax.get_xlim()
        ax.plot([low, high], [low, high], "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.legend()
    _save(fig, path)
