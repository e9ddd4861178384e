"""Training throughput of 1 vs N processes (torch.distributed, gloo on CPU), in memory and
streamed from HDF5 shards, on EMT-labelled Cu-Au cells the script makes itself.

    python benchmarks/distributed.py [--structures 240] [--atoms-repeat 3] [--channels 32] [--epochs 4]

Every run trains the same model on the same data with the same global batch, through the real
command line (`ictp train`, under `torchrun` for N > 1). Epoch times come from each run's log.csv
(training + validation), the first epoch left out as warm-up. On a machine with C cores, N
processes get C/N threads each, so the comparison is at equal hardware.
"""

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from ase.io import write

from ictp_model.cli.demo import emt_dataset


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ictp(args: list[str], processes: int, threads: int, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "ictp_model.cli.main", *args]
    if processes > 1:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
            "--master_port", str(free_port()), "-m", "ictp_model.cli.main", *args, "--distributed",
        ]  # fmt: skip
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def epoch_seconds(log: Path) -> float:
    with open(log) as handle:
        times = [float(row["time"]) for row in csv.DictReader(handle)]
    steps = [b - a for a, b in zip(times, times[1:])]
    return sum(steps) / len(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--structures", type=int, default=240)
    parser.add_argument("--atoms-repeat", type=int, default=3, help="cells of repeat³ atoms")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ictp-dist-"))
    write(work / "train.xyz", emt_dataset(args.structures, seed=1, repeat=args.atoms_repeat), format="extxyz")
    valid = max(args.structures // 10, 2)
    config = dict(
        train_file="train.xyz", valid_fraction=valid / args.structures, energy_key="REF_energy",
        forces_key="REF_forces", stress_key="REF_stress", E0s="average",
        model={"preset": "small", "channels": args.channels}, batch_size=args.batch_size,
        max_epochs=args.epochs, progress=False, dtype="float64",
    )  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    ictp(["preprocess", "config.yaml", "--out", "shards", "--shard-size", "50"], 1, args.cores, work)
    counts = {
        "shards": yaml.safe_load((work / "shards" / "statistics.json").read_text())["counts"]["train"],
        "in memory": args.structures - max(1, round(config["valid_fraction"] * args.structures)),
    }

    print(
        f"{counts['in memory']} (in memory) / {counts['shards']} (shards) training structures of {args.atoms_repeat**3} atoms, global batch {args.batch_size}, "
        f"C={args.channels}, float64, {args.epochs} epochs (first left out), {args.cores} cores"
    )
    print(f"{'data':<10} {'processes':>9} {'threads':>7} {'s/epoch':>8} {'structures/s':>12} {'speed-up':>8}")
    base = {}
    for source, train_file in (("in memory", None), ("shards", "shards")):
        for processes in args.processes:
            threads = max(args.cores // processes, 1)
            out = work / f"run-{source.replace(' ', '')}-{processes}"
            extra = ["--train_file", train_file] if train_file else []
            ictp(["train", "config.yaml", *extra, "--output_dir", str(out)], processes, threads, work)
            seconds = epoch_seconds(out / "log.csv")
            base.setdefault(source, seconds)
            print(
                f"{source:<10} {processes:>9} {threads:>7} {seconds:>8.2f} {counts[source] / seconds:>12.1f} "
                f"{base[source] / seconds:>7.2f}x"
            )


if __name__ == "__main__":
    main()
