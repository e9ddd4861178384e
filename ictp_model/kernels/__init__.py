"""Hand-written CPU kernels, registered as torch ops (``torch.ops.ictp.*``).

``edge_contraction.cpp`` is the convolution's edge contraction for inference (energies and forces;
see its header).  It is compiled on first use with torch's C++ extension builder into a folder
keyed by the source, torch and the CPU (it is built for the CPU it runs on), and loaded into the
process; the LAMMPS plugin compiles the same file.  Without a working C++ compiler the kernel is
unavailable and the model keeps its reference path (the same numbers, slower).

ICTP_EDGE_KERNEL=0 turns it off.
"""

import functools
import hashlib
import os
import platform
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("edge_contraction.cpp")
# -fopenmp: at::parallel_for is a header template, threaded only where its pragmas are compiled in
# (the OpenMP runtime is torch's own, already loaded: nothing more is linked)
FLAGS = ["-O3", "-march=native", "-fopenmp", "-DICTP_REGISTER_ON_LOAD"]


def _cpu_signature() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags"))][:2]
        return "".join(lines)
    except OSError:
        return platform.processor()


def _build_folder() -> Path:
    identity = [SOURCE.read_bytes(), torch.__version__.encode(), _cpu_signature().encode(), " ".join(FLAGS).encode()]
    key = hashlib.sha256(b"\0".join(identity)).hexdigest()
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(Path.home(), ".cache", "torch_extensions")
    folder = Path(root) / f"ictp_kernels_{key[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _register_fakes() -> None:
    """Shapes for tracing (the .pt2 export traces with symbolic sizes)."""

    @torch.library.register_fake("ictp::edge_contract")
    def _(g, x, w, path, receiver, sender, num_receivers):
        return x.new_empty((num_receivers, g.shape[2], x.shape[2]))

    @torch.library.register_fake("ictp::edge_contract_backward")
    def _(grad, g, x, w, path, receiver, sender):
        return torch.empty_like(g), torch.empty_like(x), torch.empty_like(w)


@functools.cache
def edge_kernel_available() -> bool:
    """Whether ``torch.ops.ictp.edge_contract`` is loaded (building it on the first call)."""
    if os.environ.get("ICTP_EDGE_KERNEL", "1") == "0":
        return False
    try:
        if not hasattr(torch.ops.ictp, "edge_contract"):  # (the LAMMPS plugin's process may hold it already)
            from torch.utils.cpp_extension import load

            load(
                name="ictp_kernels",
                sources=[str(SOURCE)],
                extra_cflags=FLAGS,
                build_directory=str(_build_folder()),
                is_python_module=False,
                verbose=False,
            )
        _register_fakes()
    except Exception as error:  # no compiler, or it failed: the reference path gives the same numbers
        warnings.warn(
            f"the ictp edge kernel could not be built ({type(error).__name__}: {str(error).strip()[:200]}); "
            "the model uses its reference convolution (same results, slower)",
            stacklevel=2,
        )
        return False
    return True
