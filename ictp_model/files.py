"""Atomic file writing, shared by every writer of the package (models, checkpoints, exports, logs,
metrics, plots, predictions, shards).

A file is written to a temporary name in its target folder and renamed over the target, so a
reader (or a killed process) never sees half a file. The temporary file is created private
(mkstemp gives 0600); before the rename it gets the permissions an ordinary `open()` would have
given it (0666 minus the umask), so results are as shareable as any other file the user writes.
"""

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

PathLike = Union[str, Path]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file beside ``path``, then rename it into place.

    The temporary file is removed if ``write`` fails; ``path`` is then untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:  # data on disk before the rename makes it visible
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_text(path: PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as handle:
            handle.write(text)

    return atomic_write(path, write)


def atomic_torch_save(obj: Any, path: PathLike) -> Path:
    """torch.save ``obj`` to ``path`` atomically."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))
