"""Training configuration: a typed dataclass built from YAML plus command-line overrides, validated
before any work (unknown keys are errors naming the key and what is allowed)."""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from yaml import YAMLError

from ictp_model.model.config import DTYPES, PRESETS, ModelConfig, check_keys, check_model_values
from ictp_model.typed import load_yaml, typed_values

LOSS_KEYS = {"energy", "forces", "stress", "type", "energy_mode", "reduction", "huber_delta"}
LOSS_CHOICES = {
    "type": ("mse", "huber"),
    "energy_mode": ("per_atom", "sqrt_atoms", "total"),
    "reduction": ("sum", "mean"),
}
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
    valid_file is given), train_size (subsample the training set), the label keys (null: REF_*
    when a file has them, else the plain names; see ictp_model.data.io), and E0s:
    "isolated" (config_type=IsolatedAtom frames of the training file), "average" (least squares),
    a dict {symbol: eV}, a path to a file of isolated atoms, or null (zeros).

    Precision: the model's own `dtype` (model.dtype, or its preset's); the top-level `dtype` is
    the same setting written outside the model section and may not contradict model.dtype.
    """

    train_file: str
    valid_file: Optional[str] = None
    test_file: Optional[str] = None
    valid_fraction: float = 0.1
    valid_size: Optional[int] = None
    train_size: Optional[int] = None
    energy_key: Optional[str] = None
    forces_key: Optional[str] = None
    stress_key: Optional[str] = None
    virials_key: Optional[str] = None
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
    ema_warmup: bool = True
    refit_shift: bool = True
    patience: Optional[int] = None
    clip_grad: Optional[float] = 10.0
    loss: dict = field(default_factory=dict)
    seed: int = 0
    dtype: Optional[str] = None
    device: str = "cpu"
    output_dir: str = "runs/ictp"
    progress: bool = True
    max_time: Optional[float] = None

    def __post_init__(self) -> None:
        values, problems = typed_values(dataclasses.asdict(self), TrainConfig, "")
        for key, value in values.items():
            setattr(self, key, value)
        if not problems:
            problems = self._loss_problems() + self._range_problems()
            problems += [] if problems else check_model_values(self.model_dict)
        if problems:
            raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))

    def _loss_problems(self) -> list[str]:
        unknown = sorted(set(self.loss) - LOSS_KEYS)
        if unknown:
            return [f"loss: unknown keys {unknown}; allowed: {sorted(LOSS_KEYS)}"]
        loss, problems = {**LOSS_DEFAULTS, **self.loss}, []
        for key in ("energy", "forces", "stress", "huber_delta"):
            value = loss[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"loss.{key}: expected a number, got {value!r}")
            elif not (value >= 0 if key != "huber_delta" else value > 0):
                problems.append(f"loss.{key}: must be {'>= 0' if key != 'huber_delta' else '> 0'}, got {value}")
            else:
                loss[key] = float(value)
        for key, allowed in LOSS_CHOICES.items():
            if loss[key] not in allowed:
                problems.append(f"loss.{key}: {loss[key]!r} is not one of {allowed}")
        if not problems and loss["energy"] + loss["forces"] + loss["stress"] <= 0:
            problems.append("loss: at least one of energy, forces, stress needs a weight > 0")
        self.loss = loss
        return problems

    def _range_problems(self) -> list[str]:
        problems = []
        for key, ok, rule in RANGES:
            value = getattr(self, key)
            if value is not None and not ok(value):
                problems.append(f"{key}: must be {rule}, got {value}")
        if self.dtype is not None and self.dtype not in DTYPES:
            problems.append(f"dtype: {self.dtype!r} is not one of {DTYPES}")
        if isinstance(self.model, str) and self.model not in PRESETS:
            problems.append(f"model: preset {self.model!r} is not one of {sorted(PRESETS)}")
        explicit = self.model.get("dtype") if isinstance(self.model, dict) else None
        if self.dtype is not None and explicit is not None and explicit != self.dtype:
            problems.append(f"dtype: {self.dtype!r} contradicts model.dtype {explicit!r}; give one of them")
        if isinstance(self.E0s, str) and self.E0s not in ("isolated", "average") and not Path(self.E0s).is_file():
            problems.append(f"E0s: {self.E0s!r} is not 'isolated', 'average', a dict or an existing file")
        return problems

    @property
    def model_dict(self) -> dict:
        """The model section with the top-level dtype folded in (an explicit model key, so it
        takes precedence over a preset's dtype like any other explicit key)."""
        values = {"preset": self.model} if isinstance(self.model, str) else dict(self.model)
        if self.dtype is not None:
            values["dtype"] = self.dtype
        return values

    def model_value(self, key: str) -> tuple[Any, str]:
        """(value, where it comes from) of one model key, before the data completes the model:
        the explicit key, else the preset's, else ModelConfig's default."""
        values = self.model_dict
        if key in values:
            return values[key], "dtype" if key == "dtype" and self.dtype is not None else f"model.{key}"
        preset = values.get("preset")
        if preset is not None and key in PRESETS[preset]:
            return PRESETS[preset][key], f"preset {preset}"
        return ModelConfig.__dataclass_fields__[key].default, "default"

    @property
    def model_dtype(self) -> tuple[str, str]:
        """(dtype, where it comes from) of the model this config builds."""
        return self.model_value("dtype")

    @property
    def model_cutoff(self) -> float:
        return float(self.model_value("cutoff")[0])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(x) -> bool:
    return x > 0


RANGES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("valid_fraction", lambda x: 0.0 <= x < 1.0, "in [0, 1)"),
    ("valid_size", lambda x: x >= 1, ">= 1"),
    ("train_size", lambda x: x >= 1, ">= 1"),
    ("batch_size", lambda x: x >= 1, ">= 1"),
    ("valid_batch_size", lambda x: x >= 1, ">= 1"),
    ("max_epochs", lambda x: x >= 1, ">= 1"),
    ("lr", _positive, "> 0"),
    ("weight_decay", lambda x: x >= 0, ">= 0"),
    ("scheduler_patience", lambda x: x >= 0, ">= 0"),
    ("lr_factor", lambda x: 0.0 < x < 1.0, "in (0, 1)"),
    ("ema_decay", lambda x: 0.0 <= x < 1.0, "in [0, 1)"),
    ("patience", lambda x: x >= 1, ">= 1"),
    ("clip_grad", _positive, "> 0"),
    ("max_time", _positive, "> 0"),
    ("seed", lambda x: x >= 0, ">= 0"),
]


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
        target[keys[-1]] = load_yaml(raw)
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
            values = load_yaml(Path(path).read_text()) or {}
        except (OSError, YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the YAML config ({exc})") from exc
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    values = merge(values, overrides or {})
    check_keys(values, TrainConfig, "config", error=ConfigError)
    if "train_file" not in values:
        raise ConfigError("the key 'train_file' is required")
    return TrainConfig(**values)
