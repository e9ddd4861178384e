"""What ghost atoms cost `pair_style ictp` on N ranks: the atoms each layer updates and the edges
it visits, counted with the pair style's own graph builder (ictp_graph) for a slab split of a bcc
cell along x, as LAMMPS' processor grid splits a cell that is longest along x.

    python benchmarks/ghost_cost.py --repeat 32 32 16 --ranks 1 2

    # and the time of one call of a compiled export (.pt2, or a .pt) on rank 0's graph: with the
    # per-layer receivers, and with every atom and edge in every layer
    python benchmarks/ghost_cost.py --repeat 8 8 8 --ranks 2 --time model-lammps.pt2 model-lammps.pt
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bcc_cell  # noqa: E402


def rank_graph(pos, cell, width, cutoff, skin, layers, build):
    """The graph of the rank that owns 0 <= x < width: its atoms, then every image within reach."""
    from vesin import NeighborList

    local = np.nonzero(pos[:, 0] < width)[0]
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)])
    images = np.concatenate([pos + s * cell for s in shifts])
    tags = np.tile(np.arange(1, len(pos) + 1), len(shifts))
    reach = layers * cutoff + skin
    lo, hi = -reach * np.ones(3), np.array([width, cell[1], cell[2]]) + reach
    inside = np.all((images >= lo) & (images < hi), axis=1)
    home = np.zeros(len(images), bool)
    home[13 * len(pos) + local] = True  # shift (0, 0, 0)
    keep = np.concatenate([np.nonzero(home)[0], np.nonzero(inside & ~home)[0]])
    x, t = images[keep], tags[keep]
    i, j = NeighborList(cutoff=cutoff + skin, full_list=True).compute(
        points=x, box=np.zeros((3, 3)), periodic=False, quantities="ij"
    )
    order = np.argsort(i, kind="stable")
    centres, counts = np.unique(i[order], return_counts=True)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    out = build(x, t, len(local), centres, offsets, j[order], cutoff, layers, True)
    out["positions"] = x[np.asarray(out["order"])]
    return len(local), len(x), out


def time_calls(path: str, out: dict, repeats: int = 3) -> None:
    """Median seconds of one energy + forces + virial call of an export on this graph."""
    import time

    import torch

    from ictp_export.compiled import CompiledModel

    positions = torch.as_tensor(out["positions"], dtype=torch.float64)
    edge_index = torch.as_tensor(np.asarray(out["edge_index"]), dtype=torch.int64)
    shifts = torch.as_tensor(np.asarray(out["shifts"]), dtype=torch.float64)
    species = torch.as_tensor(np.random.default_rng(0).integers(0, 4, len(positions)), dtype=torch.int64)
    layered, n = [int(r) for r in out["receivers"]], len(positions)
    if path.endswith(".pt2"):
        model, cases = (
            CompiledModel(path),
            [("per-layer receivers", layered), ("every atom, every layer", [n] * len(layered))],
        )
        call = lambda r: model(positions, species, edge_index, shifts, r)  # noqa: E731
    else:
        model, cases = torch.jit.load(path), [("per-layer receivers", layered)]
        call = lambda r: model(positions, species, edge_index, shifts, r, True, 0.0)  # noqa: E731
    for name, receivers in cases:
        call(receivers)  # warm-up
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            call(receivers)
            seconds.append(time.perf_counter() - start)
        print(f"# {path}: {name} {receivers}, {edge_index.shape[1]} edges: {np.median(seconds):.2f} s per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, nargs=3, default=[32, 32, 16], help="bcc cells along x, y, z")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--skin", type=float, default=1.0)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--time", nargs="*", default=[], help="exports (.pt2 / .pt) to time on the first --ranks graph")
    args = parser.parse_args()
    from ictp_export.plugin import graph_module

    build = graph_module().build_graph
    atoms = bcc_cell(tuple(args.repeat))
    cell = np.diag(atoms.cell[:])
    pos = atoms.get_positions() % cell
    print(f"# bcc {args.repeat} ({len(atoms)} atoms), r_c {args.cutoff} A, skin {args.skin} A, {args.layers} layers")
    print(
        f"{'ranks':>5} {'local':>7} {'given':>7} {'used':>7} {'layer-0 recv':>13} {'edges per layer':>24} {'work':>6}"
    )
    graphs = []
    for ranks in args.ranks:
        nlocal, given, out = rank_graph(pos, cell, cell[0] / ranks, args.cutoff, args.skin, args.layers, build)
        graphs.append(out)
        centres, receivers = out["edge_index"][0], out["receivers"]
        edges = [int((centres < r).sum()) for r in receivers]
        work = sum(edges) / (len(edges) * edges[-1])  # against updating the local atoms only
        print(
            f"{ranks:5d} {nlocal:7d} {given:7d} {len(out['order']):7d} {receivers[0]:7d} ({receivers[0] / nlocal:.2f}x)"
            f" {' / '.join(map(str, edges)):>24} {work:6.3f}"
        )
    if args.time:
        import torch

        torch.set_num_threads(1)
        for path in args.time:
            time_calls(path, graphs[0])


if __name__ == "__main__":
    main()
