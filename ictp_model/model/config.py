"""Model hyperparameters: a typed, validated dataclass, the paper's presets, and build_model."""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from ase.data import atomic_numbers

from ictp_model.typed import typed_values

VARIANTS = ("full", "sym", "sym+lt")
STORAGES = ("compact", "dense")
DTYPES = ("float32", "float64")
EDGE_HARMONICS = ("component", "paper")


def check_keys(values: dict, cls, what: str, extra: tuple = (), error: type = ValueError) -> None:
    """Raise ``error`` naming every key of ``values`` that is not a field of dataclass ``cls``
    (or in ``extra``), with the allowed keys."""
    allowed = {f.name for f in dataclasses.fields(cls)} | set(extra)
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise error(f"unknown {what} keys {unknown}; allowed keys: {sorted(allowed)}")


@dataclass
class ModelConfig:
    """Every hyperparameter of an ICTP model; stored with every saved model.

    Attributes:
        elements: chemical symbols the model knows, in the order of its species index (empty in a
            training config that leaves them to the data; a model needs at least one).
        cutoff: radial cutoff r_c in Å.
        channels: feature channels C (hidden and product basis).
        max_rank: L, the highest rank of hidden features passed between layers.
        edge_rank: l_max, the highest rank of edge harmonics T_l(r̂_ij) and of A.
        correlation: ν, the highest order of the product basis (ν + 1 body features per layer).
        layers: number of message-passing layers T.
        variant: "full" (all paths), "sym" (no duplicate paths in A ⊗ A) or "sym+lt"
            (sym plus channel-coupled product weights).
        storage: "compact" (2l+1 components per rank) or "dense" (3^l); identical parameters.
        odd: also use the odd (Levi-Civita) product paths, giving pseudo-tensor features.
        first_residual: the element-dependent self-connection in the first layer too (docs/math.md
            §2.1 step 5 has it in every layer, as MACE's default first interaction does); each
            element's isolated-atom site energy is then subtracted, so an atom without
            neighbours still has exactly E0 + shift.  Models saved before it existed load as False.
        edge_harmonics: the scale of the edge harmonics. "component" (default) multiplies T_l(r̂) by
            sqrt((2l+1)/C_l), so that |T_l|² = 2l+1, one per independent component (the convention
            of e3nn and MACE); "paper" keeps T_l·r̂^l = 1, i.e. |T_l|² = C_l (docs/math.md §1.1).
            The radial weights are per path and channel, so both give the same functions; the
            scale sets how fast training moves the l >= 1 paths (benchmarks/vs_mace.py measured
            faster learning with "component").  Models saved before it existed load as "paper".
        dtype: "float64" or "float32"; a property of the model, never of torch's global default.
        num_bessel, envelope_p, radial_mlp: radial basis size, envelope exponent, hidden sizes.
        readout_hidden: hidden width of the last layer's readout MLP.
        avg_num_neighbors: n̄ that divides the neighbour sum (training-set average).
        atomic_energies: E0 per element in eV (missing elements count as 0).
        scale: energy scale s (typically the RMS of training forces).
        shift: per-element energy shift μ_Z in eV added on top of E0 (missing elements: 0).
    """

    elements: list[str] = field(default_factory=list)
    cutoff: float = 5.0
    channels: int = 64
    max_rank: int = 2
    edge_rank: int = 3
    correlation: int = 3
    layers: int = 2
    variant: str = "sym"
    storage: str = "compact"
    odd: bool = False
    first_residual: bool = True
    edge_harmonics: str = "component"
    dtype: str = "float64"
    num_bessel: int = 8
    envelope_p: int = 5
    radial_mlp: list[int] = field(default_factory=lambda: [64, 64, 64])
    readout_hidden: int = 16
    avg_num_neighbors: float = 1.0
    atomic_energies: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0
    shift: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values, problems = typed_values(dataclasses.asdict(self), ModelConfig, "")
        for key, value in values.items():
            setattr(self, key, value)
        problems += model_problems(values) if not problems else []
        if problems:
            raise ValueError("invalid model config:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        """Build from a plain dict; an optional "preset" key is applied first, the rest override it.

        Raises:
            ValueError: naming every unknown key and the allowed ones.
        """
        values = dict(values)
        merged: dict[str, Any] = {}
        preset = values.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"preset: {preset!r} is not one of {sorted(PRESETS)}")
            merged.update(PRESETS[preset])
        merged.update(values)
        check_keys(merged, cls, "model", extra=("preset",))
        return cls(**merged)


# The paper's settings (docs/math.md §2.4).  Channel counts were command-line arguments in the
# reference scripts and the appendix was not available to us: where marked "chosen", the value
# follows MACE's published settings for the same benchmark and is not verified against the paper.
PAPER = dict(cutoff=5.0, channels=256, max_rank=2, edge_rank=3, correlation=3, layers=2)  # C chosen
PRESETS: dict[str, dict[str, Any]] = {
    "rmd17": {**PAPER, "dtype": "float32"},
    "3bpa": {  # L chosen
        **PAPER,
        "dtype": "float64",
        "atomic_energies": {"H": -13.5872, "C": -1029.4890, "N": -1484.9815, "O": -2041.9816},
    },
    "acac": {**PAPER, "dtype": "float64", "atomic_energies": {"H": -13.5684, "C": -1026.8539, "O": -2037.7969}},
    "md22": dict(cutoff=6.0, channels=128, max_rank=1, edge_rank=3, correlation=3, layers=2, dtype="float64"),
    "ta-v-cr-w": dict(cutoff=5.0, channels=32, max_rank=1, edge_rank=2, correlation=3, layers=2, dtype="float32"),
    # small and fast, for tests, the demo and quick experiments
    "small": dict(cutoff=4.0, channels=16, max_rank=1, edge_rank=2, correlation=2, layers=2, radial_mlp=[32, 32]),
}


POSITIVE_INTEGERS = ("channels", "correlation", "layers", "num_bessel", "envelope_p", "readout_hidden")


def model_problems(values: dict[str, Any]) -> list[str]:
    """Range problems of (typed) model values; only the keys present are checked, so that a model
    section can be checked before the data says which elements it has."""
    problems = []
    get = values.get
    if "elements" in values:
        elements = get("elements")
        unknown = [e for e in elements if e not in atomic_numbers]
        if unknown:
            problems.append(f"elements: unknown chemical symbols {unknown}")
        if len(set(elements)) != len(elements):
            problems.append("elements: symbols must be unique")
        for key in ("atomic_energies", "shift"):
            extra = sorted(set(get(key) or {}) - set(elements))
            if extra and elements:  # no elements yet: a training config's, which the data completes
                problems.append(f"{key}: elements {extra} are not in elements {elements}")
    for key, allowed in (
        ("variant", VARIANTS),
        ("storage", STORAGES),
        ("dtype", DTYPES),
        ("edge_harmonics", EDGE_HARMONICS),
    ):
        if key in values and get(key) not in allowed:
            problems.append(f"{key}: {get(key)!r} is not one of {allowed}")
    for key in POSITIVE_INTEGERS:
        if key in values and get(key) < 1:
            problems.append(f"{key}: must be >= 1, got {get(key)}")
    for key in ("max_rank", "edge_rank"):
        if key in values and get(key) < 0:
            problems.append(f"{key}: must be >= 0, got {get(key)}")
    for key in ("cutoff", "avg_num_neighbors", "scale"):
        if key in values and not get(key) > 0:
            problems.append(f"{key}: must be > 0, got {get(key)}")
    if "radial_mlp" in values and (not get("radial_mlp") or min(get("radial_mlp")) < 1):
        problems.append(f"radial_mlp: give one or more hidden sizes >= 1, got {get('radial_mlp')}")
    return problems


def check_model_values(values: dict[str, Any], what: str = "model.") -> list[str]:
    """Every problem of a model section (keys, types, ranges), with a preset applied first;
    elements may be missing (the data gives them)."""
    values = dict(values)
    preset = values.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        return [f"{what}preset: {preset!r} is not one of {sorted(PRESETS)}"]
    merged = {**(PRESETS[preset] if preset is not None else {}), **values}
    allowed = {f.name for f in dataclasses.fields(ModelConfig)} | {"preset"}
    unknown = sorted(set(merged) - allowed)
    if unknown:
        return [f"unknown {what.rstrip('.')} keys {unknown}; allowed keys: {sorted(allowed)}"]
    typed, problems = typed_values(merged, ModelConfig, what)
    return problems or [f"{what}{p}" for p in model_problems(typed)]


def resolve_config(config: Union[ModelConfig, dict[str, Any]], **overrides: Any) -> ModelConfig:
    """A ModelConfig from a ModelConfig or dict, with keyword overrides applied last."""
    values = config.to_dict() if isinstance(config, ModelConfig) else dict(config)
    values.update(overrides)
    return ModelConfig.from_dict(values)
