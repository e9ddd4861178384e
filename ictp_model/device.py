"""The torch device a command runs on, checked before any data is read."""

import torch


def check_device(device: str) -> str:
    """``device`` if this machine can use it.

    Raises:
        ValueError: a CUDA device without CUDA (a CPU-only torch, or no visible GPU), or a
            device index beyond the GPUs present, saying which.
    """
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device: {device!r} is not a torch device (cpu, cuda, cuda:N)") from exc
    if parsed.type != "cuda":
        return device
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ValueError(
            f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__} is {build}"
            f"{', and no GPU is visible' if torch.version.cuda else ''}); use --device cpu"
        )
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device
