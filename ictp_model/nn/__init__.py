"""Learnable building blocks of the ICTP model (torch.nn.Module), one concept per file."""

from .convolution import TwoBodyFeatures
from .interaction import InteractionLayer
from .linear import BlockLinear, SpeciesLinear
from .product_basis import ManyBodyFeatures
from .radial import BesselBasis, PolynomialEnvelope, RadialMLP
from .readout import LinearReadout, MLPReadout

__all__ = [
    "BesselBasis",
    "BlockLinear",
    "InteractionLayer",
    "LinearReadout",
    "MLPReadout",
    "ManyBodyFeatures",
    "PolynomialEnvelope",
    "RadialMLP",
    "SpeciesLinear",
    "TwoBodyFeatures",
]
