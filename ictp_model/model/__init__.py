"""The ICTP model: configuration, network, derivatives and persistence."""

from .build import build_model
from .config import PRESETS, ModelConfig
from .io import load_model, save_model
from .network import ICTPNetwork
from .potential import compute_properties

__all__ = ["PRESETS", "ICTPNetwork", "ModelConfig", "build_model", "compute_properties", "load_model", "save_model"]
