"""The messages of a training run: to the console (or the caller's function) and to train.log."""

from collections.abc import Callable
from pathlib import Path
from typing import Optional


class RunLog:
    """``log(message)`` prints (or calls ``echo``) and appends to ``path``; ``log.file_only``
    only appends (the per-epoch lines while a progress bar shows the same on a terminal)."""

    def __init__(self, echo: Callable[[str], None], path: Optional[Path] = None):
        self.echo, self.path = echo, path

    def __call__(self, message: str) -> None:
        self.echo(message)
        self.file_only(message)

    def file_only(self, message: str) -> None:
        if self.path is not None:
            with open(self.path, "a") as handle:
                handle.write(message + "\n")
