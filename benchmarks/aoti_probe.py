"""Probe of the AOTInductor route for a compiled export (issue "A compiled model…"): energy + forces
of one structure, eager against an AOTInductor package of the same function, with the compile time
and the largest deviation.

The route: make_fx (symbolic shapes) over the forward *including* torch.autograd.grad, so the
backward is in the graph; torch.export with dynamic atom and edge counts; aoti_compile_and_package.
Every atom is a receiver (the ASE path's graph); the LAMMPS interface's receivers and the bounded
evaluation are not in it yet.

    python benchmarks/aoti_probe.py                      # the paper-default model, the 3BPA molecule
    python benchmarks/aoti_probe.py --channels 16 --max-rank 1 --edge-rank 2 --correlation 2
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from common import median_time, system
from torch.export import Dim, export
from torch.fx.experimental.proxy_tensor import make_fx

from ictp_model.data.graph import graph_from_atoms
from ictp_model.model.build import build_model
from ictp_model.model.potential import forces_from_edges


class EnergyForces(torch.nn.Module):
    """(positions, species, edge_index, shifts) -> (per-atom energies, forces)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network = network

    def forward(self, positions, species, edge_index, shifts):
        vectors = positions.index_select(0, edge_index[1]) - positions.index_select(0, edge_index[0]) + shifts
        vectors.requires_grad_(True)
        energy = self.network(species, edge_index, vectors)
        grad = torch.autograd.grad([energy.sum()], [vectors])[0]
        return energy.detach(), forces_from_edges(grad, edge_index, positions.shape[0])


def compile_package(module: torch.nn.Module, args: tuple, path: Path) -> tuple[object, dict]:
    times = {}
    start = time.perf_counter()
    graph = make_fx(module, tracing_mode="symbolic", _allow_non_fake_inputs=True)(*args)
    for node in graph.graph.nodes:  # make_fx keeps constants as plain attributes; export wants buffers
        if node.op == "get_attr" and isinstance(getattr(graph, node.target), torch.Tensor):
            if node.target not in dict(graph.named_buffers()):
                value = getattr(graph, node.target)
                delattr(graph, node.target)
                graph.register_buffer(node.target, value)
    times["make_fx"] = time.perf_counter() - start
    atoms, edges = Dim("atoms", min=2), Dim("edges", min=2)
    start = time.perf_counter()
    program = export(graph, args, dynamic_shapes=({0: atoms}, {0: atoms}, {1: edges}, {0: edges}), strict=False)
    times["export"] = time.perf_counter() - start
    start = time.perf_counter()
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    times["compile"] = time.perf_counter() - start
    return torch._inductor.aoti_load_package(package), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--max-rank", type=int, default=2)
    parser.add_argument("--edge-rank", type=int, default=3)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--variant", default="sym", choices=["full", "sym", "sym+lt"])
    parser.add_argument("--system", default="molecule27", choices=["molecule27", "bcc54", "bcc128"])
    parser.add_argument("--molecule", default=None, help="extxyz whose first frame is the 27-atom molecule")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = dict(
        elements=["H", "C", "N", "O"], channels=args.channels, max_rank=args.max_rank, edge_rank=args.edge_rank,
        correlation=args.correlation, layers=2, cutoff=5.0, variant=args.variant, dtype="float64",
    )  # fmt: skip
    network = build_model(config).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    graph = graph_from_atoms(system(args.system, args.molecule), 5.0)
    shifts = graph.shifts @ graph.cell[0]  # one structure: its image offsets in Å
    inputs = (graph.positions, network.z_to_index[graph.numbers], graph.edge_index, shifts)
    eager = EnergyForces(network)
    with tempfile.TemporaryDirectory() as folder:
        compiled, times = compile_package(eager, inputs, Path(folder) / "model.pt2")
        reference, result = eager(*inputs), compiled(*inputs)
        deviation = max(float((a - b).abs().max()) for a, b in zip(reference, result))
        eager_ms, compiled_ms = (1e3 * median_time(lambda f=f: f(*inputs), args.repeats) for f in (eager, compiled))
    print(
        f"C={args.channels} L={args.max_rank} l_max={args.edge_rank} nu={args.correlation} {args.variant} float64, "
        f"{args.system} ({len(inputs[0])} atoms, {inputs[2].shape[1]} edges), {args.threads} threads"
    )
    print(f"{'make_fx':>8} {'export':>8} {'compile':>8} {'eager':>9} {'compiled':>9} {'ratio':>6} {'max dev':>9}")
    print(
        f"{times['make_fx']:>7.1f}s {times['export']:>7.1f}s {times['compile']:>7.1f}s {eager_ms:>7.1f}ms "
        f"{compiled_ms:>7.1f}ms {compiled_ms / eager_ms:>6.2f} {deviation:>9.1e}"
    )


if __name__ == "__main__":
    main()
