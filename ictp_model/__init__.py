"""ictp: machine-learned interatomic potentials with higher-rank irreducible Cartesian tensors."""

from .calculators.ase import ICTPCalculator
from .model import ModelConfig, build_model, compute_properties, load_model, save_model
from .version import __version__

__all__ = [
    "ICTPCalculator",
    "ModelConfig",
    "__version__",
    "build_model",
    "compute_properties",
    "load_model",
    "save_model",
]
