"""Which run an output folder holds, so that a second experiment never silently continues the first.

A run is identified by a fingerprint: the resolved training config (less the keys that may change
between a run and its continuation: the epoch and time budget, progress, device, output folder)
and a digest of every data file it reads. A checkpoint carries the fingerprint of its run;
`ictp train` resumes only when the fingerprint is the same (a killed run started again with the
same command), and otherwise stops before anything is read or written, saying what differs.
"""

import hashlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import torch

from ictp_model.model.io import FORMAT_VERSION

from .config import ConfigError, TrainConfig

# may differ between a run and its continuation: they change neither the data, nor the model,
# nor any step of the optimisation already done
CONTINUATION_KEYS = ("max_epochs", "max_time", "progress", "device", "output_dir", "patience", "compile")
RUN_FILES = (
    "checkpoint_last.pt", "model.pt", "config.yaml", "log.csv", "metrics.json", "train.log",
    "learning_curve.png", "parity.png",
)  # fmt: skip


class Existing(Enum):
    """What to do with a run already in output_dir."""

    CHECK = "check"  # resume the same run, refuse a different one
    RESTART = "restart"  # start over; the old run's files are replaced
    RESUME = "resume"  # continue the old run even though its settings or data differ


def file_digest(path: Path) -> str:
    """sha256 of a file; of a preprocessed folder, its statistics sidecar and its files' names and sizes."""
    digest = hashlib.sha256()
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            relative = str(item.relative_to(path))
            digest.update(relative.encode())
            digest.update(item.read_bytes() if item.suffix == ".json" else str(item.stat().st_size).encode())
        return digest.hexdigest()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_fingerprint(config: TrainConfig) -> dict[str, Any]:
    """{'config': the run-defining keys, 'data': {key: digest}} (missing files are caught later,
    with the data's own message)."""
    values = {k: v for k, v in config.to_dict().items() if k not in CONTINUATION_KEYS}
    files = {"train_file": config.train_file, "valid_file": config.valid_file, "test_file": config.test_file}
    if isinstance(config.E0s, str) and config.E0s not in ("isolated", "average"):
        files["E0s"] = config.E0s
    data = {k: file_digest(Path(p)) for k, p in files.items() if p and Path(p).exists()}
    return {"config": values, "data": data}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences of two fingerprints."""
    out = []
    old_config, new_config = old.get("config", {}), new.get("config", {})
    for key in sorted(set(old_config) | set(new_config)):
        if old_config.get(key) != new_config.get(key):
            out.append(f"{key}: {old_config.get(key)!r} -> {new_config.get(key)!r}")
    old_data, new_data = old.get("data", {}), new.get("data", {})
    for key in sorted(set(old_data) | set(new_data)):
        if old_data.get(key) != new_data.get(key):
            out.append(f"{key}: the file's contents differ from the run's")
    return out


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint, or one ConfigError that names the file and says how to start over."""
    remedy = "start over with 'ictp train ... --restart' (the folder's run is replaced) or give a new output_dir"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt, or not written by torch.save
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{path}: cannot read the checkpoint (truncated or not an ictp checkpoint: {reason}); {remedy}"
        ) from exc
    needed = {"model", "optimizer", "scheduler", "epoch", "history"}
    if not isinstance(checkpoint, dict) or not needed <= set(checkpoint):
        raise ConfigError(f"{path}: not an ictp training checkpoint; {remedy}")
    return checkpoint


@dataclass
class Start:
    """How a run starts: from scratch (checkpoint None) or from the folder's checkpoint."""

    checkpoint: Optional[dict]
    fingerprint: dict[str, Any]
    changes: list[str]  # what a forced resume continues with that differs
    replace: bool  # remove the old run's files before the first write


def decide_start(config: TrainConfig, existing: Existing) -> Start:
    """Check output_dir against this run; raises ConfigError before anything is written."""
    folder = Path(config.output_dir)
    fingerprint = run_fingerprint(config)
    present = [name for name in RUN_FILES if (folder / name).exists()]
    if not present:
        return Start(None, fingerprint, [], False)
    if existing is Existing.RESTART:
        return Start(None, fingerprint, [], True)
    options = (
        f"give a new output_dir, add --restart to start over (the files of {folder} are replaced), "
        "or --resume to continue that run with these settings"
    )
    last = folder / "checkpoint_last.pt"
    if not last.exists():
        raise ConfigError(
            f"{folder} already holds a run ({', '.join(present)}) without a checkpoint to resume; {options}"
        )
    checkpoint = read_checkpoint(last)
    if int(checkpoint["model"].get("format_version", 1)) < FORMAT_VERSION:
        raise ConfigError(
            f"{last} was written by an older ictp whose weights are stored in another form (format version "
            f"{checkpoint['model'].get('format_version', 1)}); its optimiser state cannot continue here. Its model.pt "
            "still loads (converted); to train, start over with --restart or give a new output_dir"
        )
    old = checkpoint.get("fingerprint")
    changes = ["the checkpoint has no run fingerprint (written by an older ictp)"] if old is None else []
    changes += differences(old or {}, fingerprint) if old is not None else []
    if changes and existing is not Existing.RESUME:
        raise ConfigError(
            f"{folder} holds a different run; this run differs in\n  " + "\n  ".join(changes) + f"\n{options}"
        )
    return Start(checkpoint, fingerprint, changes, False)


def remove_run_files(folder: Path) -> None:
    """The old run's outputs (a --restart), so that none of them outlives the new run's start."""
    for name in RUN_FILES:
        path = folder / name
        if path.exists():
            path.unlink()
