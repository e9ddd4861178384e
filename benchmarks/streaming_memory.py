"""Peak memory of training on a data set larger than a memory budget, streamed from HDF5 shards.

    python benchmarks/streaming_memory.py [--budget-mb 100] [--factor 10]

Makes two EMT-labelled data sets of 256-atom Cu-Au cells: one whose graphs (positions, labels,
neighbour lists at the model's cutoff) take about --budget-mb in memory, and one --factor times
larger. Each is preprocessed (`ictp preprocess`) and trained on for one epoch from its shards
(`ictp train --train_file SHARDS`); the smaller one also in memory, for reference. Prints the
peak RSS of every process (from the kernel's rusage of the child, not sampled).
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from ase.io import write

from ictp_model.cli.demo import emt_dataset
from ictp_model.data.graph import graph_from_atoms

CUTOFF = 5.0


def graph_bytes(atoms) -> int:
    graph = graph_from_atoms(atoms, CUTOFF, torch.float64, 0.0, atoms.arrays["REF_forces"], labelled=True)
    return sum(x.numel() * x.element_size() for x in graph if isinstance(x, torch.Tensor))


def peak_rss_mb(command: list[str], cwd: Path) -> float:
    """Run a command; its peak resident set size in MB (Linux reports kB)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-mb", type=float, default=100.0)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--channels", type=int, default=8)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ictp-stream-"))
    probe = emt_dataset(1, seed=0, repeat=4)[0]
    per_structure = graph_bytes(probe)
    small = max(int(args.budget_mb * 2**20 / per_structure), 10)
    sizes = {"budget": small, f"{args.factor}x budget": small * args.factor}
    print(
        f"one structure: {len(probe)} atoms, {per_structure / 1024:.0f} kB as a graph at {CUTOFF} A; "
        f"{small} structures fill the {args.budget_mb:.0f} MB budget"
    )
    base = dict(
        energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress", E0s="average", valid_fraction=0.02,
        model={"preset": "small", "channels": args.channels, "cutoff": CUTOFF}, batch_size=4, valid_batch_size=4,
        max_epochs=1, progress=False, dtype="float64",
    )  # fmt: skip
    rows = []
    for name, n in sizes.items():
        folder = work / name.replace(" ", "")
        folder.mkdir()
        for chunk in range(0, n, 200):  # written in chunks: the generator itself stays small
            frames = emt_dataset(min(200, n - chunk), seed=chunk + 1, repeat=4)
            write(folder / "train.xyz", frames, format="extxyz", append=chunk > 0)
        (folder / "config.yaml").write_text(yaml.safe_dump({**base, "train_file": "train.xyz"}))
        in_memory_mb = n * per_structure / 2**20
        ictp = [sys.executable, "-m", "ictp_model.cli.main"]
        rss = peak_rss_mb([*ictp, "preprocess", "config.yaml", "--out", "shards", "--shard-size", "100"], folder)
        rows.append((name, n, in_memory_mb, "ictp preprocess", rss))
        rss = peak_rss_mb([*ictp, "train", "config.yaml", "--train_file", "shards", "--output_dir", "run-s"], folder)
        rows.append((name, n, in_memory_mb, "ictp train (shards)", rss))
        if name == "budget":
            rss = peak_rss_mb([*ictp, "train", "config.yaml", "--output_dir", "run-m"], folder)
            rows.append((name, n, in_memory_mb, "ictp train (in memory)", rss))
    print(f"{'data set':<14} {'structures':>10} {'graphs MB':>10} {'process':<24} {'peak RSS MB':>11}")
    for name, n, mb, what, rss in rows:
        print(f"{name:<14} {n:>10} {mb:>10.0f} {what:<24} {rss:>11.0f}")


if __name__ == "__main__":
    main()
