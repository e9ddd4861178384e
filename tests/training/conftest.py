import pytest
from ase.io import write

from ictp_model.cli.demo import emt_dataset, isolated_atoms


@pytest.fixture(scope="session")
def emt_files(tmp_path_factory):
    """A tiny EMT-labelled Cu-Au data set (isolated atoms + 24 train cells, 6 test cells)."""
    folder = tmp_path_factory.mktemp("emt")
    write(folder / "train.xyz", isolated_atoms() + emt_dataset(24, seed=1), format="extxyz")
    write(folder / "test.xyz", emt_dataset(6, seed=2), format="extxyz")
    return folder


def tiny_values(train_file, **overrides) -> dict:
    """Training config keys for a tiny model on the EMT files (REF_* labels), with overrides."""
    values = dict(
        train_file=str(train_file),
        valid_size=6,
        energy_key="REF_energy",
        forces_key="REF_forces",
        stress_key="REF_stress",
        E0s="average",
        model={"preset": "small", "channels": 4, "radial_mlp": [8], "cutoff": 3.5},
        batch_size=4,
        max_epochs=4,
        lr=0.01,
        loss={"energy": 1.0, "forces": 1.0, "stress": 1.0},
        progress=False,
    )
    values.update(overrides)
    return values


def tiny_config(emt_files, out, **overrides):
    from ictp_model.training.config import TrainConfig

    values = tiny_values(
        emt_files / "train.xyz", **{"test_file": str(emt_files / "test.xyz"), "output_dir": str(out), **overrides}
    )
    return TrainConfig(**values)
