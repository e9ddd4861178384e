"""Learning curve and parity plots (matplotlib, Agg backend, written atomically)."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ictp_model.files import atomic_write  # noqa: E402


def _save(fig, path: Path) -> None:
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png"))
    finally:
        plt.close(fig)


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
    """parity: {set name: predictions from `evaluate`}; energy per atom and force components."""
    if not parity:
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, predictions in parity.items():
        ref_e = np.array([p["ref_energy"] / p["num_atoms"] for p in predictions])
        pred_e = np.array([p["energy"] / p["num_atoms"] for p in predictions])
        axes[0].scatter(ref_e, pred_e, s=6, label=name)
        with_forces = [p for p in predictions if p["ref_forces"] is not None]
        if with_forces:
            ref_f = np.concatenate([p["ref_forces"].reshape(-1) for p in with_forces])
            axes[1].scatter(ref_f, np.concatenate([p["forces"].reshape(-1) for p in with_forces]), s=3, label=name)
    for ax, label in zip(axes, ["energy per atom (eV)", "force component (eV/Å)"]):
        low, high = ax.get_xlim()
        ax.plot([low, high], [low, high], "k--", lw=0.8)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
        ax.legend()
    _save(fig, path)
