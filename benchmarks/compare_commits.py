"""The same measurements on several checkouts of this repository, one after the other in one
session, so that two commits are compared on the same day: eager energy + forces (27-atom
molecule, 128-atom bcc cell), one eager training step (5 molecules, forces in the loss), and with
--compiled the plain interface of the .pt2 (the package's ``model``) compiled at each checkout.

    git worktree add /tmp/before <commit>
    python benchmarks/compare_commits.py --roots /tmp/before,. --dtype float64 [--compiled]

Each checkout runs in its own process with its own ``ictp_model`` (the process checks which one it
imported); 2 threads, glibc keeping freed memory, median of repeated calls after 3 warm-up calls.
"""

import argparse
import ast
import os
import subprocess
import sys
from pathlib import Path

from common import DEFAULT_MOLECULE

WORKER = r"""
import os, statistics, sys, tempfile, time
root, dtype, compiled, molecule = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
sys.path[:0] = [root, os.path.join(root, "benchmarks")]
import torch
import ictp_model
assert ictp_model.__file__.startswith(root), ictp_model.__file__
from common import copies, median_time, system
from speed import ictp_network
from ictp_model.data.graph import collate, graph_from_atoms
from ictp_model.device import keep_freed_memory
from ictp_model.model import compute_properties

keep_freed_memory()
torch.set_num_threads(2)
spec = dict(channels=64, model="sym", storage="compact", dtype=dtype)
real = getattr(torch, dtype)


def median_ms(fn, repeats):
    return 1e3 * median_time(fn, repeats)


row = {}
for name, repeats in (("molecule27", 15), ("bcc128", 8)):
    model = ictp_network(spec)
    graph = collate([graph_from_atoms(system(name, molecule), 5.0, dtype=real)])
    row[name] = median_ms(lambda: compute_properties(model, graph, forces=True), repeats)
model = ictp_network(spec)
batch = collate([graph_from_atoms(a, 5.0, dtype=real) for a in copies(system("molecule27", molecule), 5)])
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)


def step():
    optimizer.zero_grad()
    out = compute_properties(model, batch, forces=True, training=True)
    (out["energy"].pow(2).sum() + out["forces"].pow(2).sum()).backward()
    optimizer.step()


row["train5"] = median_ms(step, 8)
if compiled:
    from torch._inductor.package import load_package

    from ictp_export import compiled as aoti
    from ictp_model.model.network import element_table
    from ictp_model.model.potential import image_offsets, species_index

    aoti.piece_programs = lambda *args, **kwargs: {}  # the plain interface only
    package = os.path.join(tempfile.mkdtemp(), "model.pt2")
    start = time.perf_counter()
    aoti.compile_network(ictp_network(spec), package)
    row["compile_s"] = time.perf_counter() - start
    interface = load_package(package, "model")
    for name, repeats in (("molecule27", 20), ("bcc128", 8)):
        atoms = system(name, molecule)
        g = collate([graph_from_atoms(atoms, 5.0, dtype=torch.float64)])
        species = species_index(element_table(["H", "C", "N", "O"]), g.numbers)
        shifts = image_offsets(g.edge_index, g.shifts.double(), g.cell.double(), g.batch)
        sizes = aoti.layer_sizes(g.edge_index, [len(atoms)] * 2)
        args = (g.positions.double(), species, g.edge_index, shifts, *sizes)
        row[name + ".pt2"] = median_ms(lambda: interface(*args), repeats)
print("ROW", repr(row))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--roots", required=True, help="comma-separated checkouts of this repository")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--compiled", action="store_true", help="also compile and time the plain .pt2")
    parser.add_argument("--molecule", default=str(DEFAULT_MOLECULE), help="extxyz whose first frame is the molecule")
    args = parser.parse_args()
    print(
        f"# dtype {args.dtype}, 2 threads, C = 64, L = 2, l_max = 3, nu = 3; median ms; load {os.getloadavg()[0]:.2f}"
    )
    for root in args.roots.split(","):
        root = str(Path(root).resolve())
        done = subprocess.run(
            [sys.executable, "-c", WORKER, root, args.dtype, "1" if args.compiled else "0", args.molecule],
            capture_output=True,
            text=True,
        )
        rows = [line for line in done.stdout.splitlines() if line.startswith("ROW ")]
        if done.returncode != 0 or not rows:
            raise SystemExit(f"{root}: the worker failed:\n{done.stderr[-2000:]}")
        values = ast.literal_eval(rows[-1][4:])  # the worker's dict of floats
        print(root, " | ".join(f"{k} {v:.1f}" for k, v in values.items()))


if __name__ == "__main__":
    main()
