"""ictp: machine-learned interatomic potentials with higher-rank irreducible Cartesian tensors."""

__version__ = "0.1.0"
