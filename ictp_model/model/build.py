"""build_model: a config (dict, preset name or ModelConfig) -> an ICTP network in its dtype."""

from typing import Any, Union

from .config import ModelConfig, resolve_config
from .network import ICTPNetwork


def build_model(config: Union[ModelConfig, dict[str, Any]], **overrides: Any) -> ICTPNetwork:
    """Build an ICTP model; the dtype is the config's, torch's global default is left alone.

    Args:
        config: a ModelConfig or a dict of its keys, optionally with "preset" (see PRESETS).
        overrides: keys that replace the config's.
    """
    resolved = resolve_config(config, **overrides)
    if not resolved.elements:
        raise ValueError("model config: elements: give at least one chemical symbol")
    network = ICTPNetwork(resolved)
    return network.to(resolved.torch_dtype)
