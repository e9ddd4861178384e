"""save_model / load_model: one file holding format version, package version, config and weights.

The file is a plain dict of tensors and builtins, so it loads with torch.load(weights_only=True);
writes go to a temporary file in the same folder and are renamed into place (atomic).
"""

import zipfile
from pathlib import Path
from typing import Any, Union

import torch

from ictp_model.files import atomic_torch_save
from ictp_model.version import __version__

from .build import build_model
from .config import ModelConfig
from .network import ICTPNetwork

FORMAT = "ictp-model"
FORMAT_VERSION = 2  # 2: weights stored at unit scale, their fan-in normalisation applied in forward


def _upgrade_v1(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """A version-1 state dict (weights stored pre-scaled by 1/sqrt(fan_in); no 1/sqrt(S) on the
    embedding and the residual) as version-2 weights of the same function."""
    out = dict(state)
    num_species = len(config.elements)
    for name, w in state.items():
        last = name.rsplit(".", 1)[-1]
        if ".radial_mlp.net." in name and last == "weight":
            out[name] = w * w.shape[1] ** 0.5
        elif last in ("radial_head", "linear_second") or (
            name.startswith("readouts.") and last in ("weight", "first", "second")
        ):
            out[name] = w * w.shape[0] ** 0.5
        elif name == "embedding" or ".residual.weights." in name:
            out[name] = w * num_species**0.5
        elif ".product.weights." in name and config.variant == "sym+lt":
            out[name] = w * w.shape[2] ** 0.5
    return out


def saved_config(payload: dict[str, Any]) -> ModelConfig:
    """The config of a model payload; keys added since it was written take the value that gives
    the model it was (first_residual False and edge_harmonics "paper" before they existed)."""
    return ModelConfig.from_dict({"first_residual": False, "edge_harmonics": "paper", **payload["config"]})


def model_state(payload: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of a model payload in the current format (older formats converted)."""
    state = payload["state_dict"]
    if int(payload.get("format_version", FORMAT_VERSION)) == 1:
        state = _upgrade_v1(state, saved_config(payload))
    return state


def model_payload(model: ICTPNetwork) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ictp_version": __version__,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def save_model(model: ICTPNetwork, path: Union[str, Path]) -> None:
    """Write ``model`` to ``path`` atomically."""
    atomic_torch_save(model_payload(model), path)


def _refuse_exports(path: Path) -> None:
    """A LAMMPS export (TorchScript archive or AOTInductor package) is not a model file: say so."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names) or any(
        n.endswith(".wrapper.so") for n in names
    ):
        raise ValueError(
            f"{path}: this is a LAMMPS export written by 'ictp export' (for pair_style ictp), not a model file; "
            "give the model.pt it was exported from (written by ictp train or save_model)"
        )


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> ICTPNetwork:
    """Read a model written by :func:`save_model` (or the ``model`` entry of a training checkpoint).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an ictp model, or of a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file")
    _refuse_exports(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or pickled-object files
        raise ValueError(f"{path}: not a readable ictp model file ({type(exc).__name__}: {exc})") from exc
    if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict):
        payload = payload["model"]  # a training checkpoint
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an ictp model file (no '{FORMAT}' format marker)")
    if int(payload.get("format_version", -1)) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: model format version {payload['format_version']} is newer than this ictp "
            f"(supports <= {FORMAT_VERSION}); upgrade ictp"
        )
    model = build_model(saved_config(payload))
    model.load_state_dict(model_state(payload))
    return model.to(device)
