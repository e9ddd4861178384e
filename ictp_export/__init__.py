"""TorchScript export of ICTP models for the LAMMPS pair style, and the location of its plugin.

The exported module's interface (what `pair_style ictp` calls) is documented in
:mod:`ictp_export.lammps_model`.
"""

from .export import export_model, load_exported
from .plugin import lammps_environment, libtorch_path, plugin_path

__all__ = ["export_model", "lammps_environment", "libtorch_path", "load_exported", "plugin_path"]
