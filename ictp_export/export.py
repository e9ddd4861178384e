"""Export a trained model to one file for `pair_style ictp`: TorchScript (``.pt``, runs everywhere)
or an AOTInductor package (``.pt2``, compiled for one device; see :mod:`.compiled`)."""

import copy
import warnings
from pathlib import Path
from typing import Union

import torch

from ictp_model.files import atomic_write
from ictp_model.model.io import load_model
from ictp_model.model.network import ICTPNetwork

from .lammps_model import LAMMPSModel


def export_model(model: Union[ICTPNetwork, str, Path], out: Union[str, Path], device: str = "cpu") -> Path:
    """Export ``model`` (an ICTP network or a saved model file) to ``out``, written atomically: the
    suffix chooses the format, ``.pt2`` compiles for ``device`` (minutes), anything else is
    TorchScript (``device`` unused: the pair style moves it)."""
    network = load_model(model) if isinstance(model, (str, Path)) else model
    if Path(out).suffix == ".pt2":
        from .compiled import compile_network

        compile_network(network, out, device)
        return Path(out)
    network = copy.deepcopy(network).to("cpu").eval()
    network.use_edge_kernel(False)  # TorchScript runs the reference convolution (no compiled kernel needed)
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
