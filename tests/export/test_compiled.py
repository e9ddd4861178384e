"""The compiled export (.pt2, AOTInductor) equals the TorchScript export: energies, per-atom
energies, forces, virials and per-atom virials, on layered graphs as the pair style builds them,
of sizes other than the one it was traced on (one package, no recompiling).

The package is the session's compiled_light (tests/conftest.py): one compile for all tests."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import ictp_export.compiled as compiled_module
from ictp_export.compiled import CompiledModel, CompileError, compile_network, example_inputs
from ictp_export.lammps_model import LAMMPSModel
from ictp_model import ICTPCalculator

from ..model.structures import organic_molecule, small_model, triclinic_cell

TIGHT = dict(rtol=1e-10, atol=1e-12)


def network():
    return small_model(max_rank=1, edge_rank=2, correlation=2).eval()  # the model of compiled_light


@pytest.fixture(scope="module")
def package(compiled_light):
    return compiled_light[1]


@pytest.mark.parametrize("num_atoms, seed", [(23, 0), (31, 1), (40, 2)])
def test_compiled_equals_the_torchscript_export(package, num_atoms, seed):
    net = network()
    compiled = CompiledModel(package)
    scripted = torch.jit.script(LAMMPSModel(net))
    positions, species, edge_index, shifts, receivers = example_inputs(net, num_atoms, seed)
    shifts = torch.randn(shifts.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 0.1
    got = compiled(positions, species, edge_index, shifts, receivers, True)
    want = scripted(positions, species, edge_index, shifts, receivers, True)
    assert sorted(got) == sorted(want)
    assert got["node_energy"].shape == (receivers[-1],)
    for key in want:
        torch.testing.assert_close(got[key], want[key], **TIGHT, msg=key)


@pytest.mark.parametrize("num_atoms, seed", [(23, 0), (40, 2)])
@pytest.mark.parametrize("edges_per_chunk", [1, 15, 60])
def test_compiled_in_chunks_equals_the_torchscript_export(package, num_atoms, seed, edges_per_chunk):
    """The bounded-memory evaluation by the package's compiled steps (chunks of receivers of at
    most ``edges_per_chunk`` edges) equals the TorchScript export's plain evaluation."""
    net = network()
    compiled = CompiledModel(package)
    scripted = torch.jit.script(LAMMPSModel(net))
    positions, species, edge_index, shifts, receivers = example_inputs(net, num_atoms, seed)
    shifts = torch.randn(shifts.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)) * 0.1
    memory_mb = edges_per_chunk * compiled.chunks.bytes_per_edge / 2**20
    assert compiled.chunks.chunk_edges(memory_mb) == edges_per_chunk < edge_index.shape[1] / 3
    got = compiled(positions, species, edge_index, shifts, receivers, True, memory_mb)
    want = scripted(positions, species, edge_index, shifts, receivers, True)
    assert got["node_energy"].shape == (receivers[-1],)
    for key in want:
        torch.testing.assert_close(got[key], want[key], **TIGHT, msg=key)


def test_compiled_on_tiny_graphs(package):
    """A lone atom, two atoms with and without an edge between them, no atoms at all, and two bonded
    atoms beside a lone one; plain and in chunks of one edge (the lone atom's chunk has none)."""
    compiled, scripted = CompiledModel(package), torch.jit.script(LAMMPSModel(network()))
    f64, no_edges = torch.float64, torch.zeros(2, 0, dtype=torch.long)
    two = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.2, 0.1]], dtype=f64)
    cases = [
        (torch.zeros(1, 3, dtype=f64), torch.tensor([2]), no_edges, torch.zeros(0, 3, dtype=f64), [1, 1]),
        (two, torch.tensor([0, 1]), torch.tensor([[0, 1], [1, 0]]), torch.zeros(2, 3, dtype=f64), [2, 2]),
        (two, torch.tensor([0, 1]), no_edges, torch.zeros(0, 3, dtype=f64), [2, 2]),
        (
            torch.zeros(0, 3, dtype=f64),
            torch.zeros(0, dtype=torch.long),
            no_edges,
            torch.zeros(0, 3, dtype=f64),
            [0, 0],
        ),
    ]
    three = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.2, 0.1], [9.0, 0.0, 0.0]], dtype=f64)  # the last alone
    cases.append((three, torch.tensor([0, 1, 2]), torch.tensor([[0, 1], [1, 0]]), torch.zeros(2, 3, dtype=f64), [3, 3]))
    one_edge = compiled.chunks.bytes_per_edge / 2**20  # chunks of one edge, and the lone atom's of none
    for inputs in cases:
        want = scripted(*inputs, True)
        for memory_mb in (0.0, one_edge):
            got = compiled(*inputs, True, memory_mb)
            for key in want:
                torch.testing.assert_close(
                    got[key], want[key], **TIGHT, msg=f"{len(inputs[0])} atoms, {memory_mb}: {key}"
                )


def test_metadata_is_the_torchscript_attributes(package):
    net, compiled = network(), CompiledModel(package)
    scripted = torch.jit.script(LAMMPSModel(net))
    assert compiled.elements == list(scripted.elements)
    assert compiled.cutoff == scripted.cutoff
    assert compiled.num_layers == scripted.num_layers
    assert compiled.dtype == scripted.dtype
    assert compiled.config == net.config


def test_a_cpu_package_calls_the_edge_kernel_where_it_builds(package):
    """So that the equalities above check the kernel's compiled path against the reference."""
    from ictp_model.kernels import edge_kernel_available

    assert CompiledModel(package).metadata["edge_kernel"] == json.dumps(edge_kernel_available())


def test_a_file_that_is_no_package_is_refused(tmp_path):
    path = tmp_path / "model.pt2"
    path.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a loadable AOTInductor package"):
        CompiledModel(path)


def test_a_package_of_an_older_input_layout_is_refused(package, monkeypatch):
    """A version-1 package (every layer updated every atom, a `counted` input) has no
    package_version; it is refused with what to do, not called with the wrong inputs."""
    real = torch._inductor.aoti_load_package

    class Older:
        def __init__(self, path):
            self.loaded = real(path)

        def get_metadata(self):
            return {k: v for k, v in self.loaded.get_metadata().items() if k != "package_version"}

    monkeypatch.setattr(torch._inductor, "aoti_load_package", Older)
    with pytest.raises(ValueError, match=r"package version 1, this ictp reads 3; export it again"):
        CompiledModel(package)


def test_a_failed_compile_says_why_and_names_the_pt_export(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("g++: command not found")

    traced = SimpleNamespace(module=lambda **options: None)  # (tracing: tested above)
    monkeypatch.setattr(compiled_module, "_export", lambda module, args, dynamic, times: traced)
    monkeypatch.setattr(torch._inductor, "aot_compile", fail)
    out = tmp_path / "model.pt2"
    with pytest.raises(CompileError, match=r"g\+\+: command not found.*ictp export --out model-lammps.pt"):
        compile_network(network(), out)
    assert not out.exists()  # nothing half-written


def test_calculator_on_the_package_equals_the_calculator_on_the_model(package):
    """ASE through the .pt2 (periodic cell with stress, a molecule, a batch, an MD-like move that
    reuses the neighbour list) equals the eager model to 1e-10."""
    compiled, eager = ICTPCalculator(str(package)), ICTPCalculator(network())
    cell, mol = triclinic_cell(), organic_molecule()
    for atoms in (cell, mol):
        for step in range(2):
            atoms.positions += 0.03 * step  # within the skin: the cached neighbour list
            keys = ["energy", "forces", "energies"] + (["stress"] if atoms.pbc.any() else [])
            for key in keys:
                got, want = compiled.get_property(key, atoms), eager.get_property(key, atoms)
                np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=key)
    for got, want in zip(compiled.calculate_batch([cell, mol]), eager.calculate_batch([cell, mol])):
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-12, err_msg=key)
    with pytest.raises(ValueError, match="compiled for float64"):
        ICTPCalculator(str(package), dtype="float32")


def test_calculator_on_the_package_in_bounded_memory(package):
    """ICTPCalculator(.pt2, memory_mb=...) evaluates in chunks and equals the eager model."""
    budget = 10 * CompiledModel(package).chunks.bytes_per_edge / 2**20  # chunks of 10 edges
    compiled, eager = ICTPCalculator(str(package), memory_mb=budget), ICTPCalculator(network())
    for atoms in (triclinic_cell(), organic_molecule()):
        for key in ["energy", "forces", "energies"] + (["stress"] if atoms.pbc.any() else []):
            got, want = compiled.get_property(key, atoms), eager.get_property(key, atoms)
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=key)


def test_ictp_eval_on_the_package_equals_ictp_eval_on_the_model(compiled_light, tmp_path):
    """`ictp eval --model m.pt2` reports the metrics and writes the predictions of `--model m.pt`
    (periodic cells with stress and molecules, in batches), also with --memory: the same numbers
    to 1e-10."""
    import json

    from ase.io import read, write

    from ictp_model.cli.main import main

    _, package = compiled_light
    rng = np.random.default_rng(5)
    frames = []
    for k in range(4):
        atoms = triclinic_cell() if k % 2 else organic_molecule()
        atoms.rattle(0.02, seed=k)
        atoms.info["REF_energy"] = float(rng.normal())
        atoms.arrays["REF_forces"] = rng.normal(size=(len(atoms), 3))
        if atoms.pbc.any():
            atoms.info["REF_stress"] = rng.normal(size=6) * 0.01
        frames.append(atoms)
    write(tmp_path / "data.xyz", frames, format="extxyz")
    results = {}
    for name, model in (("pt", package.parent / "model.pt"), ("pt2", package)):
        args = ["eval", "--model", str(model), "--data", str(tmp_path / "data.xyz"), "--batch-size", "3"]
        args += ["--json", str(tmp_path / f"{name}.json"), "--write-predictions", str(tmp_path / f"{name}.xyz")]
        assert main(args) == 0
        results[name] = (json.loads((tmp_path / f"{name}.json").read_text()), read(tmp_path / f"{name}.xyz", ":"))
    (want, want_frames), (got, got_frames) = results["pt"], results["pt2"]
    assert got.keys() == want.keys()
    for group in want:
        assert got[group].keys() == want[group].keys()
        for metric in want[group]:
            np.testing.assert_allclose(got[group][metric], want[group][metric], **TIGHT, err_msg=f"{group}:{metric}")
    for g, w in zip(got_frames, want_frames):
        np.testing.assert_allclose(g.info["ICTP_energy"], w.info["ICTP_energy"], **TIGHT)
        np.testing.assert_allclose(g.arrays["ICTP_forces"], w.arrays["ICTP_forces"], **TIGHT)
        if w.pbc.any():
            np.testing.assert_allclose(g.info["ICTP_stress"], w.info["ICTP_stress"], **TIGHT)
    # --memory: the package's compiled steps in chunks of ~10 edges, the same metrics
    budget = f"{10 * CompiledModel(package).chunks.bytes_per_edge / 2**20:.6g}"
    args = ["eval", "--model", str(package), "--data", str(tmp_path / "data.xyz"), "--memory", budget]
    assert main(args + ["--json", str(tmp_path / "chunks.json")]) == 0
    chunked = json.loads((tmp_path / "chunks.json").read_text())
    for group in want:
        for metric in want[group]:
            np.testing.assert_allclose(chunked[group][metric], want[group][metric], **TIGHT, err_msg=metric)
