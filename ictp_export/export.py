"""Export a trained model to one TorchScript file for `pair_style ictp`."""

import os
import tempfile
import warnings
from pathlib import Path
from typing import Union

import torch

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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():  # TorchScript is this file format; its deprecation notice is not news here
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(scripted, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def load_exported(path: Union[str, Path]) -> torch.jit.ScriptModule:
    """Load an exported model (as the pair style does) for inspection or testing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu")
