"""Training configuration: a typed dataclass built from YAML plus command-line overrides, validated
before any work (unknown keys are errors naming the key and what is allowed)."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from ictp_model.model.config import PRESETS, check_keys

LOSS_KEYS = {"energy", "forces", "stress", "type", "energy_mode", "reduction", "huber_delta"}
LOSS_DEFAULTS = {
    "energy": 1.0,
    "forces": 10.0,
    "stress": 0.0,
    "type": "mse",  # mse | huber
    "energy_mode": "per_atom",  # per_atom: ΔE/N | sqrt_atoms: ΔE/√N | total: ΔE
    "reduction": "sum",  # sum (the paper's SSE) | mean
    "huber_delta": 0.01,
}


class ConfigError(ValueError):
    """An invalid training configuration."""


@dataclass
class TrainConfig:
    """Everything `ictp train` needs; saved as config.yaml next to the model.

    Data: train_file (required; a file, or a folder written by `ictp preprocess`, which is then
    streamed with its own valid/test shards and statistics), valid_file, test_file, valid_fraction or valid_size (used when no
    valid_file is given), train_size (subsample the training set), the label keys, and E0s:
    "isolated" (config_type=IsolatedAtom frames of the training file), "average" (least squares),
    a dict {symbol: eV}, a path to a file of isolated atoms, or null (zeros).
    """

    train_file: str
    valid_file: Optional[str] = None
    test_file: Optional[str] = None
    valid_fraction: float = 0.1
    valid_size: Optional[int] = None
    train_size: Optional[int] = None
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virials_key: str = "virials"
    weight_key: str = "config_weight"
    E0s: Union[str, dict, None] = "average"
    model: Union[str, dict] = field(default_factory=lambda: {"preset": "small"})
    batch_size: int = 5
    valid_batch_size: int = 10
    max_epochs: int = 100
    lr: float = 0.01
    weight_decay: float = 5e-7
    amsgrad: bool = True
    scheduler_patience: int = 50
    lr_factor: float = 0.8
    ema_decay: Optional[float] = 0.99
    patience: Optional[int] = None
    clip_grad: Optional[float] = 10.0
    loss: dict = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float64"
    device: str = "cpu"
    output_dir: str = "runs/ictp"
    resume: bool = True
    progress: bool = True
    max_time: Optional[float] = None

    def __post_init__(self) -> None:
        problems = []
        unknown = sorted(set(self.loss) - LOSS_KEYS)
        if unknown:
            problems.append(f"loss: unknown keys {unknown}; allowed: {sorted(LOSS_KEYS)}")
        self.loss = {**LOSS_DEFAULTS, **self.loss}
        if self.loss["type"] not in ("mse", "huber"):
            problems.append(f"loss.type: {self.loss['type']!r} is not 'mse' or 'huber'")
        if self.loss["energy_mode"] not in ("per_atom", "sqrt_atoms", "total"):
            problems.append(f"loss.energy_mode: {self.loss['energy_mode']!r} is not per_atom, sqrt_atoms or total")
        if self.loss["reduction"] not in ("sum", "mean"):
            problems.append(f"loss.reduction: {self.loss['reduction']!r} is not 'sum' or 'mean'")
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype: {self.dtype!r} is not float32 or float64")
        if isinstance(self.model, str) and self.model not in PRESETS:
            problems.append(f"model: preset {self.model!r} is not one of {sorted(PRESETS)}")
        elif not isinstance(self.model, (str, dict)):
            problems.append("model: give a preset name or a mapping of model keys")
        if isinstance(self.E0s, str) and self.E0s not in ("isolated", "average") and not Path(self.E0s).is_file():
            problems.append(f"E0s: {self.E0s!r} is not 'isolated', 'average', a dict or an existing file")
        if not 0.0 <= self.valid_fraction < 1.0:
            problems.append(f"valid_fraction: must be in [0, 1), got {self.valid_fraction}")
        for key in ("batch_size", "valid_batch_size", "max_epochs"):
            if int(getattr(self, key)) < 1:
                problems.append(f"{key}: must be >= 1, got {getattr(self, key)}")
        if problems:
            raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))

    @property
    def model_dict(self) -> dict:
        return {"preset": self.model} if isinstance(self.model, str) else dict(self.model)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_overrides(pairs: list[str]) -> dict:
    """['--max_epochs', '5', '--model.channels', '16'] -> {'max_epochs': 5, 'model': {'channels': 16}}.
    Values are read as YAML scalars (numbers, booleans, null, lists)."""
    out: dict = {}
    if len(pairs) % 2:
        raise ConfigError(f"overrides must come as '--key value' pairs, got {pairs}")
    for flag, raw in zip(pairs[::2], pairs[1::2]):
        if not flag.startswith("--"):
            raise ConfigError(f"expected '--key', got {flag!r}")
        keys = flag[2:].replace("-", "_").split(".")
        target = out
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = yaml.safe_load(raw)
    return out


def merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        elif isinstance(value, dict) and isinstance(out.get(key), str) and key == "model":
            out[key] = merge({"preset": out[key]}, value)
        else:
            out[key] = value
    return out


def load_train_config(path: Optional[Union[str, Path]], overrides: Optional[dict] = None) -> TrainConfig:
    """YAML file (optional) + overrides -> validated TrainConfig.

    Raises:
        ConfigError: unreadable YAML, unknown keys (named, with the allowed ones), invalid values.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the YAML config ({exc})") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    values = merge(values, overrides or {})
    check_keys(values, TrainConfig, "config", error=ConfigError)
    if "train_file" not in values:
        raise ConfigError("the key 'train_file' is required")
    return TrainConfig(**values)
