"""The torch device a command runs on, checked before any data is read."""

import platform

import torch

# Inductor settings of every compiled path (.pt2 export, compile: true): kernels take the caller's
# thread count instead of the compiling process's, and with it inductor hands the convolution's
# scatter_add to ATen's kernel on CPU, even on one thread (else: one atomic add per element).
INDUCTOR_OPTIONS = {"cpp.dynamic_threads": True}


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


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse instead of returning it to the kernel.

    glibc maps each block above its mmap threshold fresh and unmaps it on free, so a model's large
    intermediates are faulted in and zeroed again at every evaluation; on large cells that is
    most of the time (README, "The allocator").  The same as pair_style ictp's ``allocator keep``
    and as ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=200000000000 MALLOC_TOP_PAD_=1073741824``.
    Process-wide and not undone; returns False (and changes nothing) without glibc.
    """
    import ctypes

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4  # malloc.h
    return all(
        libc.mallopt(option, value) == 1
        for option, value in ((m_mmap_max, 0), (m_trim_threshold, -1), (m_top_pad, 1 << 30))
    )
