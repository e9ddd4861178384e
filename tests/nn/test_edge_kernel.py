"""The hand-written edge kernel (ictp_model/kernels) against plain torch (the op, both dtypes) and
against the reference convolution (the model, float64)."""

import numpy as np
import pytest
import torch
from ase import Atoms

from ictp_model.data.graph import graph_from_atoms
from ictp_model.kernels import edge_kernel_available
from ictp_model.model import compute_properties

from ..model.structures import VARIANTS, evaluate, evaluate_many, organic_molecule, slab, small_model, triclinic_cell

pytestmark = pytest.mark.skipif(
    not edge_kernel_available(), reason="the edge kernel could not be built here (no working C++ compiler)"
)


def both_paths(model, run):
    assert model.use_edge_kernel(False) is False
    reference = run()
    assert model.use_edge_kernel(True) is True
    try:
        kernel = run()
    finally:
        model.use_edge_kernel(False)
    return reference, kernel


def assert_same(reference: dict, kernel: dict) -> None:
    assert reference.keys() == kernel.keys()
    for key in reference:
        torch.testing.assert_close(kernel[key], reference[key], rtol=1e-10, atol=1e-12, msg=key)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])  # the unrolled input dimensions and a general one
@pytest.mark.parametrize("channels", [4, 8, 12, 64])  # whole vectors of channels and not
def test_the_op_and_its_derivative_equal_plain_torch(dtype, k, channels):
    gen = torch.Generator().manual_seed(k * 100 + channels)
    edges, nodes, receivers, q, p = 60, 11, 9, 13, 4
    g, x, w = (
        torch.randn(*shape, dtype=dtype, generator=gen)
        for shape in ((edges, k, q), (nodes, k, channels), (edges, p, channels))
    )
    path = torch.sort(torch.randint(0, p, (q,), generator=gen)).values
    receiver, sender = (
        torch.randint(0, receivers, (edges,), generator=gen),
        torch.randint(0, nodes, (edges,), generator=gen),
    )
    grad = torch.randn(receivers, q, channels, dtype=dtype, generator=gen)

    inputs = [t.clone().requires_grad_() for t in (g, x, w)]
    messages = torch.einsum("ekq,ekc->eqc", inputs[0], inputs[1][sender]) * inputs[2][:, path]
    expected = torch.zeros(receivers, q, channels, dtype=dtype).index_add(0, receiver, messages)
    expected_grads = torch.autograd.grad(expected, inputs, grad)

    tolerance = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)
    got = torch.ops.ictp.edge_contract(g, x, w, path, receiver, sender, receivers)
    torch.testing.assert_close(got, expected.detach(), **tolerance)
    got_grads = torch.ops.ictp.edge_contract_backward(grad, g, x, w, path, receiver, sender)
    for name, a, b in zip(["dg", "dx", "dw"], got_grads, expected_grads):
        torch.testing.assert_close(a, b, **tolerance, msg=name)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("storage", ["compact", "dense"])
def test_the_kernel_gives_the_reference_energies_forces_and_stress(variant, storage):
    model = small_model(variant=variant, storage=storage, odd=True)
    for atoms, stress in ((organic_molecule(), False), (triclinic_cell(), True), (slab(), True)):
        assert_same(*both_paths(model, lambda: evaluate(model, atoms, stress=stress)))  # noqa: B023


def test_the_kernel_in_a_batch_with_unsorted_edges_and_a_lone_atom():
    """Edges in any order (the kernel groups them itself), an atom that neither sends nor receives,
    a batch of structures; edge gradients (the per-atom virials' source) compared too."""
    model = small_model(variant="sym")
    lone = Atoms("O", positions=[[0.0, 0.0, 0.0]], cell=np.eye(3) * 20.0, pbc=False)
    structures = [organic_molecule(), lone, triclinic_cell()]

    assert_same(*both_paths(model, lambda: evaluate_many(model, structures, stress=True)[0]))

    graph = graph_from_atoms(triclinic_cell(), model.cutoff)
    order = torch.randperm(graph.edge_index.shape[1], generator=torch.Generator().manual_seed(1))
    edge_index, shifts = graph.edge_index[:, order], graph.shifts[order]

    def edge_gradients():
        vectors = graph.positions[edge_index[1]] - graph.positions[edge_index[0]]
        vectors = (vectors + shifts.to(vectors.dtype) @ graph.cell[0]).requires_grad_(True)
        energy = model(model.z_to_index[graph.numbers], edge_index, vectors)
        return {"node_energy": energy.detach(), "edges": torch.autograd.grad(energy.sum(), vectors)[0]}

    assert_same(*both_paths(model, edge_gradients))


def test_the_bounded_evaluation_with_the_kernel():
    model = small_model(variant="sym+lt")
    graph = graph_from_atoms(triclinic_cell(), model.cutoff)
    reference = {k: v.detach() for k, v in compute_properties(model, graph, stress=True).items()}
    model.use_edge_kernel(True)
    try:
        bounded = compute_properties(model, graph, stress=True, memory_mb=1e-3)  # the smallest chunks
    finally:
        model.use_edge_kernel(False)
    assert_same(reference, {k: v.detach() for k, v in bounded.items()})


def test_training_with_the_kernel_stops_with_a_clear_error():
    """The kernel has no second derivative: a force loss must not get silently wrong gradients."""
    model = small_model()
    model.use_edge_kernel(True)
    graph = graph_from_atoms(organic_molecule(), model.cutoff)
    with pytest.raises(RuntimeError, match="no second derivative"):
        out = compute_properties(model, graph, forces=True, training=True)
        out["forces"].square().sum().backward()


def test_a_torchscript_export_of_a_model_with_the_kernel_on_runs_the_reference_path(tmp_path):
    """TorchScript cannot call the kernel (a .pt runs everywhere): the export scripts the model with
    it off, whatever the caller's flag, and leaves the caller's flag alone."""
    from ictp_export import export_model, load_exported
    from ictp_model.model.potential import species_index

    model = small_model()
    model.use_edge_kernel(True)
    exported = load_exported(export_model(model, tmp_path / "model-lammps.pt"))
    assert all(m.edge_kernel for m in model.modules() if hasattr(m, "edge_kernel"))
    atoms = triclinic_cell()
    graph = graph_from_atoms(atoms, model.cutoff)
    species = species_index(model.z_to_index, graph.numbers)
    shifts = graph.shifts.to(torch.float64) @ graph.cell[0]
    out = exported(graph.positions, species, graph.edge_index, shifts, [len(atoms)] * 2, True)
    model.use_edge_kernel(False)
    ref = compute_properties(model, graph, forces=True, stress=True)
    torch.testing.assert_close(out["forces"], ref["forces"].detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out["virial"], ref["virial"][0].detach(), rtol=1e-10, atol=1e-12)


def test_an_edge_index_out_of_range_is_an_error_not_a_stray_write():
    g, x = torch.zeros(2, 1, 3, dtype=torch.float64), torch.zeros(4, 1, 5, dtype=torch.float64)
    w = torch.zeros(2, 1, 5, dtype=torch.float64)
    path = torch.zeros(3, dtype=torch.long)
    ok = torch.tensor([0, 1])
    assert torch.ops.ictp.edge_contract(g, x, w, path, ok, ok, 2).shape == (2, 3, 5)
    with pytest.raises(RuntimeError, match="edge 1 has atom index 2"):
        torch.ops.ictp.edge_contract(g, x, w, path, torch.tensor([0, 2]), ok, 2)  # receiver 2 of 2
    with pytest.raises(RuntimeError, match="edge 0 has sender 4"):
        torch.ops.ictp.edge_contract(g, x, w, path, ok, torch.tensor([4, 0]), 2)  # sender 4 of 4 atoms
    grad = torch.zeros(2, 3, 5, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="edge 1 has receiver 2"):
        torch.ops.ictp.edge_contract_backward(grad, g, x, w, path, torch.tensor([0, 2]), ok)
