"""ictp: machine-learned interatomic potentials with higher-rank irreducible Cartesian tensors."""

__version__ = "0.1.0"

from .calculators.ase import ICTPCalculator  # noqa: E402
from .model import ModelConfig, build_model, compute_properties, load_model, save_model  # noqa: E402

__all__ = [
    "ICTPCalculator",
    "ModelConfig",
    "__version__",
    "build_model",
    "compute_properties",
    "load_model",
    "save_model",
]
