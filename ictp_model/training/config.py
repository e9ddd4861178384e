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


class ConfigError(ValueError):
    """An invalid training configuration."""


LOSS_CHOICES = {
    "type": ("mse", "huber"),
    "energy_mode": ("per_atom", "sqrt_atoms", "total"),
    "reduction": ("sum", "mean"),
}


@dataclass
class LossConfig:
    """The loss section: term weights w_E, w_F, w_S and how each term is formed.

    type: mse | huber (huber_delta); energy_mode: per_atom (ΔE/N) | sqrt_atoms (ΔE/√N) | total (ΔE);
    reduction: sum over the batch (the paper's SSE) | mean (per structure / per component, MACE's).
    """

    energy: float = 1.0
    forces: float = 10.0
    stress: float = 0.0
    type: str = "mse"
    energy_mode: str = "per_atom"
    reduction: str = "sum"
    huber_delta: float = 0.01

    def __post_init__(self) -> None:
        problems = loss_problems(dataclasses.asdict(self))
        if problems:
            raise ConfigError("invalid loss config:\n  " + "\n  ".join(problems))
        for key, value in typed_values(dataclasses.asdict(self), LossConfig, "")[0].items():
            setattr(self, key, value)  # weights as floats

    def weight(self, term: str) -> float:
        """w_term of "energy", "forces" or "stress"."""
        return getattr(self, term)


def loss_problems(values: dict) -> list[str]:
    """Every problem of a loss section (unknown keys, types, ranges, choices), keys named."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(LossConfig)})
    if unknown:
        return [f"loss: unknown keys {unknown}; allowed: {sorted(f.name for f in dataclasses.fields(LossConfig))}"]
    values, problems = typed_values(values, LossConfig, "loss.")
    if problems:
        return problems
    for key in ("energy", "forces", "stress"):
        if key in values and values[key] < 0:
            problems.append(f"loss.{key}: must be >= 0, got {values[key]}")
    if "huber_delta" in values and not values["huber_delta"] > 0:
        problems.append(f"loss.huber_delta: must be > 0, got {values['huber_delta']}")
    for key, allowed in LOSS_CHOICES.items():
        if key in values and values[key] not in allowed:
            problems.append(f"loss.{key}: {values[key]!r} is not one of {allowed}")
    total = sum(values.get(k, getattr(LossConfig, k)) for k in ("energy", "forces", "stress"))
    if not problems and total <= 0:
        problems.append("loss: at least one of energy, forces, stress needs a weight > 0")
    return problems


@dataclass
class TrainConfig:
    """Everything `ictp train` needs; saved as config.yaml next to the model.

    Data: train_file (required; a file, or a folder written by `ictp preprocess`, which is then
    streamed with its own valid/test shards and statistics), valid_file, test_file, valid_fraction or valid_size (used when no
    valid_file is given), train_size (subsample the training set), the label keys (null: REF_*
    when a file has them, else the plain names; see ictp_model.data.io), and E0s:
    "isolated" (config_type=IsolatedAtom frames of the training file), "average" (least squares),
    a dict {symbol: eV}, a path to a file of isolated atoms, or null (zeros).

    Compiling (compile: true): compile_cache is the folder of inductor's cache (null: the
    TORCHINDUCTOR_CACHE_DIR environment variable, else torch's default under /tmp).  A later run
    of the same architecture compiles from it in about a minute instead of several, so on a
    cluster whose /tmp is wiped between jobs it belongs on a persistent file system.

    Precision: the model's own `dtype` (model.dtype, or its preset's); the top-level `dtype` is
    the same setting written outside the model section and may not contradict model.dtype.

    Energy shift: with refit_shift the per-element shift is fitted by least squares (not learned),
    on the training residuals every epoch; the saved model's shift is solved once more on
    final_shift_data, "train+valid" (default) or "train". Model selection never sees the
    validation energies through it (they enter only after training); with few structures
    (rMD17 N = 50) unseen structures share a bias that the training set alone cannot show, and
    the validation set halves it.

    Parsed and validated once, on construction: `model` becomes a ModelConfig (preset applied,
    defaults filled in; elements empty unless given, the data and its statistics complete it) and
    `loss` a LossConfig, so that everything the run needs is typed before any file is read.
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
    model: Union[str, dict, ModelConfig] = field(default_factory=lambda: {"preset": "small"})
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
    final_shift_data: str = "train+valid"
    patience: Optional[int] = None
    clip_grad: Optional[float] = 10.0
    loss: Union[dict, LossConfig] = field(default_factory=dict)
    seed: int = 0
    dtype: Optional[str] = None
    device: str = "cpu"
    output_dir: str = "runs/ictp"
    progress: bool = True
    max_time: Optional[float] = None
    compile: bool = False  # the training step and validation traced and compiled by inductor (see .compiled)
    compile_cache: Optional[str] = None  # inductor's cache folder (see above)

    def __post_init__(self) -> None:
        values, problems = typed_values(dataclasses.asdict(self), TrainConfig, "")
        for key, value in values.items():
            setattr(self, key, value)
        if not problems:
            problems = self._range_problems()
            problems += [] if problems else loss_problems(self.loss) + check_model_values(self._model_section())
        if problems:
            raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))
        self.dtype_source = self._dtype_source()
        self.model = ModelConfig.from_dict(self._model_section())
        self.loss = LossConfig(**self.loss)

    def _range_problems(self) -> list[str]:
        problems = []
        for key, ok, rule in RANGES:
            value = getattr(self, key)
            if value is not None and not ok(value):
                problems.append(f"{key}: must be {rule}, got {value}")
        if self.final_shift_data not in FINAL_SHIFT_DATA:
            problems.append(f"final_shift_data: {self.final_shift_data!r} is not one of {FINAL_SHIFT_DATA}")
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

    def _model_section(self) -> dict:
        """The model section as written, with the top-level dtype folded in (an explicit model key,
        so it takes precedence over a preset's dtype like any other explicit key)."""
        values = {"preset": self.model} if isinstance(self.model, str) else dict(self.model)
        if self.dtype is not None:
            values["dtype"] = self.dtype
        return values

    def _dtype_source(self) -> str:
        """Where the model's dtype comes from, for the log: dtype, model.dtype, a preset or the default."""
        if self.dtype is not None:
            return "dtype"
        section = self._model_section()
        if "dtype" in section:
            return "model.dtype"
        preset = section.get("preset")
        return f"preset {preset}" if preset is not None and "dtype" in PRESETS[preset] else "default"

    @property
    def model_dtype(self) -> tuple[str, str]:
        """(dtype, where it comes from) of the model this config builds."""
        return self.model.dtype, self.dtype_source

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


FINAL_SHIFT_DATA = ("train+valid", "train")


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
