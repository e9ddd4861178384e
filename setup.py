"""The wheel carries the C++ of the LAMMPS plugin: CMakeLists.txt, pair_ictp/ and the kernels it
compiles (ictp_model/kernels/*.cpp) are copied into ictp_export/native/, from where ictp_export.plugin_path() builds the plugin on first use against
the installed torch and lammps (the build must use the runtime torch, so it is not done here)."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithNativeSources(build_py):
    def run(self):
        super().run()
        native = Path(self.build_lib) / "ictp_export" / "native"
        if native.exists():
            shutil.rmtree(native)
        (native / "pair_ictp").mkdir(parents=True)
        shutil.copy2(ROOT / "CMakeLists.txt", native / "CMakeLists.txt")
        for source in sorted((ROOT / "pair_ictp").iterdir()):
            if source.is_file():
                shutil.copy2(source, native / "pair_ictp" / source.name)
        kernels = native / "ictp_model" / "kernels"
        kernels.mkdir(parents=True)
        for source in sorted((ROOT / "ictp_model" / "kernels").glob("*.cpp")):
            shutil.copy2(source, kernels / source.name)


setup(cmdclass={"build_py": BuildPyWithNativeSources})
