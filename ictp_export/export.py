"""Export a trained model to one TorchScript file for `pair_style ictp`."""

import warnings
from pathlib import Path
from typing import Union

import torch

from ictp_model.files import atomic_write
from ictp_model.model.io import load_model
from ictp_model.model.network import ICTPNetwork

from .lammps_model import LAMMPSModel


def export_model(model: Union[ICTPNetwork, str, Path], out: Union[str, Path]) -> Path:
    """Script ``model`` (an ICTP network or a saved model file) and write it atomically to ``out``."""
    network = load_model(model) if isinstance(model, (str, Path)) else model
    network = network.to("cpu").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(LAMMPSModel(network))

    def write(tmp: str) -> None:
        with warnings.catch_warnings():  # TorchScript is this file format; its deprecation notice is not news here
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(scripted, tmp)

    return atomic_write(out, write)


def load_exported(path: Union[str, Path]) -> torch.jit.ScriptModule:
    """Load an exported model (as the pair style does) for inspection or testing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")
