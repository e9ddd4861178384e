"""Training: configuration, losses, metrics, the loop and the `ictp train` driver."""

from .config import ConfigError, TrainConfig, load_train_config
from .evaluation import evaluate
from .loop import fit
from .run import run_training

__all__ = ["ConfigError", "TrainConfig", "evaluate", "fit", "load_train_config", "run_training"]
