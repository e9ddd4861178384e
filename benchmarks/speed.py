"""Inference and training-step speed and memory of ICTP (three variants, dense and compact) against
MACE at matched width and rank, measured in the same run.

Every configuration runs in a fresh process (so its peak RSS is its own), with 2 threads, 3 warm-up
calls and the median of --repeats timed calls of energy + forces.  Neighbour lists and batches are
built outside the timed region.

--compiled adds the compiled export (``ictp export --out X.pt2``, AOTInductor) of each variant: it
is compiled in a process of its own first (the compile time is printed), then timed like the others
(``CompiledModel.properties``: energies and forces of the whole batch as one graph).

--allocators system,keep times every configuration under both allocator settings: glibc as it is,
and glibc told to keep freed memory (ictp_model.device.keep_freed_memory, pair_style ictp's default).

Eager inference runs the convolution's edge kernel on CPU (ictp_model/kernels, what ICTPCalculator
and `ictp eval` run); --conv reference times the reference convolution instead, --conv both both
(rows marked /ref).  Training steps always run the reference (the kernel has no second derivative).

--rounds N times every configuration N times, round by round (MACE, then each ICTP row, then again),
and reports the median over rounds with the spread: this machine's speed drifts by up to 2x over
minutes, and interleaving keeps such a spell from falling on one model's rows only.

--device cuda runs every model on the GPU (the .pt2 compiled for it); each timed call ends with a
synchronisation, and the memory column is then the peak of torch's GPU allocator, not the RSS.

Usage:
    python benchmarks/speed.py [--channels 64] [--dtype float64] [--molecule ../shared/data/3bpa/train_300K.xyz]
                               [--systems molecule27,bcc54,bcc128] [--batches 1,16] [--no-mace] [--compiled]
                               [--allocators system,keep] [--device cuda] [--conv kernel|reference|both]
                               [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

VARIANTS = ["full", "sym", "sym+lt"]
CUTOFF = 5.0


def run_worker(spec: dict) -> dict:
    import torch
    from common import build_mace, copies, current_rss_mb, mace_batch, median_time, peak_rss_mb, system

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec.get("device", "cpu"))
    if spec["allocator"] == "keep":
        from ictp_model.device import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("allocator keep needs glibc")
    atoms = system(spec["system"], spec.get("molecule"))
    structures = copies(atoms, spec["batch"])
    dtype = getattr(torch, spec["dtype"])
    baseline = current_rss_mb()
    if spec["model"] == "mace":
        model = build_mace(spec["channels"], 2, spec["dtype"], CUTOFF, avg_num_neighbors=15.0).to(device)
        batch = {
            k: v.to(device) if torch.is_tensor(v) else v
            for k, v in mace_batch(structures, CUTOFF, spec["dtype"]).items()
        }
        num_edges = int(batch["edge_index"].shape[1])

        def energy_forces():
            return model(batch, training=False, compute_force=True)

        def train_step_fn():
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step():
                optimizer.zero_grad()
                out = model(batch, training=True, compute_force=True)
                loss = out["energy"].pow(2).sum() + out["forces"].pow(2).sum()
                loss.backward()
                optimizer.step()

            return step
    else:
        from ictp_model.data.graph import collate, graph_from_atoms
        from ictp_model.model import compute_properties

        model = ictp_network(spec).to(device)
        graph = collate([graph_from_atoms(a, CUTOFF, dtype=dtype) for a in structures]).to(device)
        num_edges = graph.num_edges

        if spec.get("package"):  # the .pt2 through the path ICTPCalculator and `ictp eval` take
            from ictp_export.compiled import CompiledModel

            compiled = CompiledModel(spec["package"])

            def energy_forces():
                return compiled.properties(graph)
        else:
            if spec["mode"] == "infer":  # what ICTPCalculator and `ictp eval` run (training: the reference)
                model.use_edge_kernel(spec.get("edge_kernel", True) and device.type == "cpu")

            def energy_forces():
                return compute_properties(model, graph, forces=True)

        def train_step_fn():
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

            def step():
                optimizer.zero_grad()
                out = compute_properties(model, graph, forces=True, training=True)
                loss = out["energy"].pow(2).sum() + out["forces"].pow(2).sum()
                loss.backward()
                optimizer.step()

            return step

    fn = train_step_fn() if spec["mode"] == "train" else energy_forces
    if device.type == "cuda":  # a call is done when the GPU is
        work = fn

        def fn():
            work()
            torch.cuda.synchronize(device)

    seconds = median_time(fn, spec["repeats"])
    return {
        **spec,
        "ms_per_structure": 1e3 * seconds / spec["batch"],
        "ms_per_call": 1e3 * seconds,
        "peak_rss_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb(),
        "baseline_rss_mb": baseline,
        "num_edges": num_edges,
        "num_atoms": sum(len(a) for a in structures),
    }


def ictp_network(spec: dict):
    import torch

    from ictp_model import build_model

    torch.manual_seed(0)
    return build_model(
        {
            "elements": ["H", "C", "N", "O"],
            "cutoff": CUTOFF,
            "channels": spec["channels"],
            "max_rank": 2,
            "edge_rank": 3,
            "correlation": 3,
            "layers": 2,
            "variant": spec["model"],
            "storage": spec["storage"],
            "dtype": spec["dtype"],
            "avg_num_neighbors": 15.0,
        }
    )


def compile_worker(spec: dict) -> dict:
    """Compile the spec's network into spec["package"]; returns the seconds it took."""
    import torch

    from ictp_export.compiled import compile_network

    torch.set_num_threads(spec["threads"])
    start = time.perf_counter()
    compile_network(ictp_network(spec), spec["package"], spec.get("device", "cpu"))
    return {**spec, "compile_s": time.perf_counter() - start}


def launch(spec: dict) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]))
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, os.path.join(here, "speed.py"), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=here,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {**spec, "error": tail[0][:100]}
    return json.loads(lines[-1])


def row_key(row: dict) -> tuple:
    return (row["allocator"], row["system"], row["batch"], row["mode"])


def row_name(row: dict) -> str:
    return row["model"] + (".pt2" if row.get("package") else "" if row.get("edge_kernel", True) else "/ref")


def describe(row: dict) -> str:
    what = f"{row['system']} {row_name(row)}"
    return f"{what} ERROR {row['error']}" if "error" in row else f"{what} {row['ms_per_structure']:.1f} ms"


def summarise(runs: list[dict]) -> dict:
    """One configuration's rounds as one row: the median time over rounds, its spread, the
    largest peak memory; an error in any round is the row's error."""
    failed = [run for run in runs if "error" in run]
    if failed:
        return failed[0]
    times = [run["ms_per_structure"] for run in runs]
    return {
        **runs[0],
        "ms_per_structure": statistics.median(times),
        "round_min_ms": min(times),
        "round_max_ms": max(times),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        "rounds": times,
    }


def configurations(base: dict, args, packages: str) -> list[dict]:
    """Every timed configuration of one allocator setting, MACE first in each group."""
    specs = []
    for system in args.systems.split(","):
        for batch in [int(b) for b in args.batches.split(",")]:
            group = dict(base, system=system, batch=batch, mode="infer")
            if not args.no_mace:
                specs.append(dict(group, model="mace", storage="-"))
            for variant in args.variants.split(","):
                for storage in args.storages.split(","):
                    for conv in ("kernel", "reference") if args.conv == "both" else (args.conv,):
                        specs.append(dict(group, model=variant, storage=storage, edge_kernel=conv == "kernel"))
                if args.compiled:  # one package serves every system
                    package = os.path.join(packages, f"{variant}.pt2")
                    specs.append(dict(group, model=variant, storage="compact", package=package))
    if not args.no_train:
        train = dict(base, system="molecule27", batch=5, mode="train", repeats=max(3, args.repeats // 2))
        if not args.no_mace:
            specs.append(dict(train, model="mace", storage="-"))
        for variant in args.variants.split(","):
            specs.append(dict(train, model=variant, storage="compact"))
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--molecule", default=None, help="extxyz whose first frame is the 27-atom molecule")
    parser.add_argument("--systems", default="molecule27,bcc54,bcc128")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--storages", default="compact,dense")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-mace", action="store_true")
    parser.add_argument("--no-train", action="store_true")
    parser.add_argument("--compiled", action="store_true", help="also the compiled export (.pt2) of each variant")
    parser.add_argument(
        "--conv",
        choices=["kernel", "reference", "both"],
        default="kernel",
        help="eager inference with the edge kernel (ictp_model/kernels; what ICTPCalculator runs on CPU), "
        "the reference convolution, or both (rows marked /ref)",
    )
    parser.add_argument("--allocators", default="system", help="system, keep or both (system,keep)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (every model on the GPU)")
    parser.add_argument("--rounds", type=int, default=1, help="time every configuration this often, interleaved")
    parser.add_argument("--json", help="also write all rows to this file")
    args = parser.parse_args()
    if not set(args.allocators.split(",")) <= {"keep", "system"}:
        raise SystemExit(f"--allocators: system, keep or system,keep, not {args.allocators!r}")
    if args.worker:
        spec = json.loads(args.worker)
        print(json.dumps(compile_worker(spec) if spec["mode"] == "compile" else run_worker(spec)))
        return
    packages = tempfile.TemporaryDirectory()

    base = dict(
        channels=args.channels, dtype=args.dtype, threads=args.threads, repeats=args.repeats, device=args.device
    )
    if args.molecule:
        base["molecule"] = os.path.abspath(args.molecule)
    specs = []
    for allocator in args.allocators.split(","):
        specs += configurations(dict(base, allocator=allocator), args, packages.name)

    print(
        f"# {args.channels} channels, {args.dtype}, {args.threads} threads, L = 2, l_max = 3, nu = 3, 2 layers, r_c = 5 A,"
        f" device {args.device}"
    )
    print(f"# median of {args.repeats} after 3 warm-up calls; load average at start {os.getloadavg()[0]:.2f}")
    header = (
        f"{'alloc':6} {'system':10} {'mode':5} {'batch':>5} {'model':7} {'storage':7} {'edges':>7} {'ms/struct':>10}"
    )
    header += f" {'peak GPU MB' if args.device.startswith('cuda') else 'peak RSS MB':>11} {'x MACE':>7}"
    print(header)
    compiled: dict[str, dict] = {}
    for spec in specs:
        if spec.get("package") and spec["package"] not in compiled:
            made = launch(dict(spec, mode="compile"))
            compiled[spec["package"]] = made
            note = f"ERROR {made['error']}" if "error" in made else f"{made['compile_s']:.0f} s"
            print(f"# compiled {spec['model']} ({args.dtype}): {note}", flush=True)
    specs = [s for s in specs if not (s.get("package") and "error" in compiled[s["package"]])]
    timed = [[] for _ in specs]  # every round's row of each configuration
    for round_ in range(args.rounds):
        for i, spec in enumerate(specs):
            timed[i].append(launch(spec))
            if args.rounds > 1:
                print(f"# round {round_ + 1}/{args.rounds}: {describe(timed[i][-1])}", flush=True)
    rows = [summarise(runs) for runs in timed]
    reference = {row_key(row): row["ms_per_structure"] for row in rows if row["model"] == "mace" and "error" not in row}
    for row in rows:
        if "error" in row:
            print(
                f"{row['allocator']:6} {row['system']:10} {row['mode']:5} {row['batch']:5d} {row['model']:7}"
                f" {row['storage']:7} ERROR {row['error']}"
            )
            continue
        key = row_key(row)
        ratio = f"{row['ms_per_structure'] / reference[key]:7.2f}" if key in reference else f"{'-':>7}"
        line = f"{row['allocator']:6} {row['system']:10} {row['mode']:5} {row['batch']:5d} {row_name(row):7}"
        line += f" {row['storage']:7} {row['num_edges']:7d}"
        line += f" {row['ms_per_structure']:10.1f} {row['peak_rss_mb']:11.0f} {ratio}"
        if args.rounds > 1:
            line += f"  rounds {row['round_min_ms']:.1f}-{row['round_max_ms']:.1f}"
        print(line, flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
