"""The compiled export (``ictp export --out X.pt2``, :mod:`ictp_export.compiled`) against the eager
model: energy + forces of one structure, the compile time of each stage and the largest deviation.

Eager is the LAMMPS interface as TorchScript runs it (the plain path, :class:`LAMMPSModel`);
compiled is the .pt2 through :class:`CompiledModel`, in the same process, one after the other.

    python benchmarks/aoti_probe.py                      # the paper-default model, the 27-atom molecule
    python benchmarks/aoti_probe.py --dtype float32 --system bcc128
"""

import argparse
import tempfile
from pathlib import Path

import torch
from common import median_time, system

from ictp_export.compiled import CompiledModel, compile_network
from ictp_export.lammps_model import LAMMPSModel
from ictp_model.data.graph import graph_from_atoms
from ictp_model.model.build import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--max-rank", type=int, default=2)
    parser.add_argument("--edge-rank", type=int, default=3)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--variant", default="sym", choices=["full", "sym", "sym+lt"])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--system", default="molecule27", choices=["molecule27", "bcc54", "bcc128"])
    parser.add_argument("--molecule", default=None, help="extxyz whose first frame is the 27-atom molecule")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = dict(
        elements=["H", "C", "N", "O"], channels=args.channels, max_rank=args.max_rank, edge_rank=args.edge_rank,
        correlation=args.correlation, layers=2, cutoff=5.0, variant=args.variant, dtype=args.dtype,
    )  # fmt: skip
    network = build_model(config).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    graph = graph_from_atoms(system(args.system, args.molecule), 5.0)
    shifts = graph.shifts @ graph.cell[0]  # one structure: its image offsets in Å
    n = len(graph.positions)
    inputs = (graph.positions, network.z_to_index[graph.numbers], graph.edge_index, shifts, [n, n], False)
    eager = torch.jit.script(LAMMPSModel(network))
    with tempfile.TemporaryDirectory() as folder:
        times = compile_network(network, Path(folder) / "model.pt2")
        compiled = CompiledModel(Path(folder) / "model.pt2")
        reference, result = eager(*inputs), compiled(*inputs)
        deviation = max(float((reference[k] - result[k]).abs().max()) for k in ("energy", "node_energy", "forces"))
        eager_ms, compiled_ms = (1e3 * median_time(lambda f=f: f(*inputs), args.repeats) for f in (eager, compiled))
    print(
        f"C={args.channels} L={args.max_rank} l_max={args.edge_rank} nu={args.correlation} {args.variant} {args.dtype}, "
        f"{args.system} ({n} atoms, {inputs[2].shape[1]} edges), {args.threads} threads"
    )
    print(f"{'trace':>8} {'export':>8} {'compile':>8} {'eager':>9} {'compiled':>9} {'ratio':>6} {'max dev':>9}")
    print(
        f"{times['trace']:>7.1f}s {times['export']:>7.1f}s {times['compile']:>7.1f}s {eager_ms:>7.1f}ms "
        f"{compiled_ms:>7.1f}ms {compiled_ms / eager_ms:>6.2f} {deviation:>9.1e}"
    )


if __name__ == "__main__":
    main()
