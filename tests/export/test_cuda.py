"""On a CUDA GPU, every Python evaluation path equals the CPU's in float64 (energies, per-atom
energies, forces, stress, virials, per-atom virials, to 1e-10): the model through ICTPCalculator,
its bounded-memory evaluation, the TorchScript export and the .pt2 compiled for CUDA.

Skipped where torch sees no GPU (CI); run on a GPU machine (README, "GPUs")."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ictp_export.compiled import example_inputs
from ictp_export.lammps_model import LAMMPSModel
from ictp_model import ICTPCalculator

from ..model.structures import VARIANTS, organic_molecule, small_model, triclinic_cell

TIGHT = dict(rtol=1e-10, atol=1e-10)
KEYS = ("energy", "energies", "forces")


def results(atoms, calculator) -> dict:
    atoms = atoms.copy()
    atoms.calc = calculator
    out = {"energy": atoms.get_potential_energy(), "energies": atoms.get_potential_energies()}
    out["forces"] = atoms.get_forces()
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress()
    return out


def assert_same(got: dict, want: dict, **tolerance) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], err_msg=key, **(tolerance or TIGHT))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("make", [organic_molecule, triclinic_cell], ids=["molecule", "triclinic"])
def test_model_on_the_gpu_equals_the_cpu(cuda, variant, make):
    model = small_model(variant=variant, odd=True)
    want = results(make(), ICTPCalculator(model, device="cpu"))
    assert_same(results(make(), ICTPCalculator(model, device=cuda)), want)


def test_bounded_evaluation_on_the_gpu_equals_the_plain_one_on_the_cpu(cuda):
    model = small_model()
    atoms = triclinic_cell().repeat((2, 2, 1))
    want = results(atoms, ICTPCalculator(model, device="cpu"))
    assert_same(results(atoms, ICTPCalculator(model, device=cuda, memory_mb=0.05)), want)


def test_float32_on_the_gpu_is_close_to_float64_on_the_cpu(cuda):
    model = small_model()
    want = results(triclinic_cell(), ICTPCalculator(model, device="cpu"))
    got = results(triclinic_cell(), ICTPCalculator(model, device=cuda, dtype="float32"))
    assert_same(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("memory_mb", [0.0, 0.02], ids=["plain", "chunked"])
def test_torchscript_export_on_the_gpu_equals_the_cpu(cuda, memory_mb):
    network = small_model(variant="sym+lt", odd=True).eval()
    scripted = torch.jit.script(LAMMPSModel(network))
    positions, species, edge_index, shifts, receivers = example_inputs(network, 31, seed=1)
    want = scripted(positions, species, edge_index, shifts, receivers, True, memory_mb)
    scripted.to(cuda)
    inputs = [x.to(cuda) for x in (positions, species, edge_index, shifts)]
    got = scripted(*inputs, receivers, True, memory_mb)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].device.type == "cuda", key
        torch.testing.assert_close(got[key].cpu(), want[key], **TIGHT, msg=key)


# Loading a CUDA package in the process that compiled it crashed torch 2.11's loader on an H200
# (segmentation fault in aoti_load_package); users load it in another process (ictp md, LAMMPS),
# and so does this check, where a crash fails one test instead of ending the session.
COMPILED_CHECK = """
import sys, torch
from ictp_export.compiled import CompiledModel, example_inputs
from ictp_export.lammps_model import LAMMPSModel
from ictp_model import ICTPCalculator
from tests.export.test_cuda import TIGHT, assert_same, results
from tests.model.structures import organic_molecule, small_model, triclinic_cell

network = small_model(max_rank=1, edge_rank=2, correlation=2).eval()  # compiled_light_cuda's model
compiled = CompiledModel(sys.argv[1])
assert compiled.device.type == "cuda", compiled.device
scripted = torch.jit.script(LAMMPSModel(network))
for num_atoms, seed in [(23, 0), (40, 2)]:  # the traced size and another one: no recompiling
    positions, species, edge_index, shifts, receivers = example_inputs(network, num_atoms, seed)
    want = scripted(positions, species, edge_index, shifts, receivers, True)
    got = compiled(positions, species, edge_index, shifts, receivers, True)  # moved to the GPU by it
    chunks = compiled(positions, species, edge_index, shifts, receivers, True, 15 * compiled.chunks.bytes_per_edge / 2**20)
    for key in want:
        torch.testing.assert_close(got[key].cpu(), want[key], **TIGHT, msg=f"{num_atoms} atoms: {key}")
        torch.testing.assert_close(chunks[key].cpu(), want[key], **TIGHT, msg=f"{num_atoms} atoms, chunks: {key}")
for make in (organic_molecule, triclinic_cell):  # ICTPCalculator runs the package where it was compiled
    assert_same(results(make(), ICTPCalculator(sys.argv[1])), results(make(), ICTPCalculator(network)))
print("OK")
"""


def test_cuda_package_equals_the_torchscript_export_and_the_model_on_the_cpu(compiled_light_cuda):
    root = Path(__file__).resolve().parents[2]
    check = subprocess.run(
        [sys.executable, "-c", COMPILED_CHECK, str(compiled_light_cuda[1])],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=900,
    )
    assert check.returncode == 0 and "OK" in check.stdout, (
        f"exit code {check.returncode}\n{check.stdout[-1500:]}\n{check.stderr[-3000:]}"
    )
