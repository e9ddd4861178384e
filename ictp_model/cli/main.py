"""The `ictp` command line: a thin shell over the library.

ictp train CONFIG.yaml [--key value ...]   train (keys as in the YAML; dotted keys reach into model/loss)
ictp train CONFIG.yaml --distributed       the same under torchrun / srun (one process per device)
ictp preprocess CONFIG.yaml --out DIR      data too large for memory -> HDF5 shards (train with --train_file DIR)
ictp eval --model M --data FILE            errors of a model on labelled data
ictp demo                                  the self-contained demonstration (no download)
"""

import argparse
import sys
from pathlib import Path
from typing import Optional

from ictp_model.data.io import DataError
from ictp_model.training.config import ConfigError


def _train(args: argparse.Namespace, extra: list[str]) -> int:
    from ictp_model.device import check_device
    from ictp_model.training.config import load_train_config, parse_overrides
    from ictp_model.training.provenance import Existing
    from ictp_model.training.run import run_training

    # CONFIG.yaml is optional; argparse would mistake an override's value for it, so read it here
    path = extra.pop(0) if extra and not extra[0].startswith("--") else None
    config = load_train_config(path, parse_overrides(extra))
    if args.restart and args.resume:
        raise ConfigError("--restart and --resume contradict each other; give one")
    existing = Existing.RESTART if args.restart else (Existing.RESUME if args.resume else Existing.CHECK)
    _allocator(args.allocator, config.device)
    if not args.distributed:
        run_training(config, existing=existing)
        return 0
    from ictp_model.training import distributed

    ranks, config.device = distributed.init(check_device(config.device))
    completed = False
    try:
        run_training(config, ranks=ranks, existing=existing)
        completed = True
    finally:
        distributed.shutdown(completed)
    distributed.exit_process(0)
    return 0


def _preprocess(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from ictp_model.data.io import Keys
    from ictp_model.data.preprocess import preprocess
    from ictp_model.training.config import load_train_config, parse_overrides
    from ictp_model.training.run import resolve_e0s

    path = extra.pop(0) if extra and not extra[0].startswith("--") else None
    config = load_train_config(path, parse_overrides(extra))
    if config.valid_size is not None and not config.valid_file:
        raise ConfigError("valid_size: preprocess streams the data once; give valid_fraction or valid_file")
    cutoff = config.model.cutoff
    preprocess(
        {"train": config.train_file, "valid": config.valid_file, "test": config.test_file},
        Keys(config.energy_key, config.forces_key, config.stress_key, config.virials_key, config.weight_key),
        Path(args.out),
        cutoff,
        lambda stats, isolated, elements: resolve_e0s(config, stats, isolated, elements),
        valid_fraction=config.valid_fraction,
        train_size=config.train_size,
        seed=config.seed,
        shard_size=args.shard_size,
        store_neighbours=args.store_neighbours,
    )
    return 0


def _eval(args: argparse.Namespace, extra: list[str]) -> int:
    from .evaluate import run_eval

    if extra:
        raise ConfigError(f"unknown arguments {extra}")
    _allocator(args.allocator, args.device)
    return run_eval(args)


def _md(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from ase.io import read

    from ictp_model.calculators.ase import ICTPCalculator
    from ictp_model.calculators.md import MDSettings, UnphysicalError, run_md
    from ictp_model.device import check_device

    if extra:
        raise ConfigError(f"unknown arguments {extra}")
    check_device(args.device)
    _allocator(args.allocator, args.device)
    try:
        atoms = read(args.structure, index=args.index)
    except Exception as exc:
        raise ValueError(f"{args.structure}: cannot read the structure ({type(exc).__name__}: {exc})") from exc
    atoms.calc = ICTPCalculator(
        args.model if len(args.model) > 1 else args.model[0],
        device=args.device,
        dtype=args.dtype,
        memory_mb=args.memory,
    )
    settings = MDSettings(
        ensemble=args.ensemble, temperature=args.temperature, timestep=args.timestep, steps=args.steps,
        log_every=args.log_every, pressure=args.pressure, min_distance=args.min_distance,
        max_drift=args.max_drift, seed=args.seed,
    )  # fmt: skip
    out = Path(args.out)
    log = Path(args.log) if args.log else out.with_suffix(".csv")
    try:
        summary = run_md(atoms, settings, out, log, progress=True)
    except UnphysicalError:
        return 3
    print(
        f"{settings.steps} steps ({settings.steps * settings.timestep / 1000:.3f} ps) in {summary['seconds']:.1f} s: "
        f"{summary['ns_per_day']:.3f} ns/day; trajectory {out}, log {log}"
    )
    return 0


def _export(args: argparse.Namespace, extra: list[str]) -> int:
    from ictp_export import export_model

    if extra:
        raise ConfigError(f"unknown arguments {extra}")
    from ictp_export.compiled import CompileError

    if Path(args.out).suffix == ".pt2":
        print(f"compiling {args.out} for {args.device} (AOTInductor; this takes minutes) ...", flush=True)
    try:
        path = export_model(args.model, args.out, args.device)
    except CompileError as exc:
        print(f"ictp export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: use it with 'pair_style ictp' and 'pair_coeff * * {path} <element per type>'")
    return 0


def _demo(args: argparse.Namespace, extra: list[str]) -> int:
    from .demo import run_demo

    if extra:
        raise ConfigError(f"unknown arguments {extra}")
    return run_demo(args)


def config_help() -> str:
    """The training config's keys with their defaults, the loss and model keys, and the presets."""
    import dataclasses

    from ictp_model.model.config import PRESETS, ModelConfig
    from ictp_model.training.config import LossConfig, TrainConfig

    def default(f: dataclasses.Field) -> str:
        if f.default is not dataclasses.MISSING:
            return repr(f.default)
        if f.default_factory is not dataclasses.MISSING:
            return repr(f.default_factory())
        return "(required)"

    lines = ["config keys (YAML or --key value) and their defaults:"]
    lines += [f"  {f.name:20s} {default(f)}" for f in dataclasses.fields(TrainConfig)]
    lines += ["loss keys (--loss.KEY):"] + [f"  {f.name:20s} {default(f)}" for f in dataclasses.fields(LossConfig)]
    statistics = ("elements", "atomic_energies", "shift", "avg_num_neighbors", "scale")
    model_fields = [f for f in dataclasses.fields(ModelConfig) if f.name not in statistics]
    lines += ["model keys (--model.KEY; elements, E0s, n̄ and the energy scale come from the data):"]
    lines += [f"  {f.name:20s} {default(f)}" for f in model_fields]
    lines += ["model presets (model: NAME, or model: {preset: NAME, ...}):"]
    lines += [
        f"  {name:20s} {', '.join(f'{k}={v}' for k, v in values.items() if k != 'atomic_energies')}"
        for name, values in PRESETS.items()
    ]
    return "\n".join(lines)


ALLOCATOR_HELP = (
    "on CPU, 'keep' (default) tells glibc to keep freed memory for reuse, so that large intermediates are not "
    "faulted in again at every step (measured 1.1x for a training step, 2.7x for a 1 024-atom cell; "
    "benchmarks/speed.py --allocators system,keep); 'system' leaves the allocator alone"
)


def _add_allocator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allocator", choices=["keep", "system"], default="keep", help=ALLOCATOR_HELP)


def _allocator(choice: str, device: str) -> None:
    from ictp_model.device import keep_freed_memory

    if choice == "keep" and device.startswith("cpu"):
        keep_freed_memory()


MEMORY_HELP = (
    "working-memory budget of one evaluation in MiB (default 0: 1024); a structure whose edges do not fit is "
    "evaluated in chunks of atoms, with the same results"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ictp", description="Irreducible Cartesian tensor potentials")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_preprocess, _add_eval, _add_md, _add_export_and_demo):
        add(sub)
    return parser


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train",
        usage="ictp train [CONFIG.yaml] [--key value ...] [--restart | --resume] [--distributed] [--allocator keep|system]",
        help="train a model from a YAML config; '--key value' pairs override it (dotted keys reach into model/loss)",
        description="Train a model from a YAML config; '--key value' pairs override its keys (dotted keys such as "
        "--model.channels 32 or --loss.forces 100 reach into the model and loss sections).",
        epilog=config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over the processes started by torchrun or srun (gloo on CPU, NCCL on GPU)",
    )
    train.add_argument(
        "--restart",
        action="store_true",
        help="output_dir holds another run: start over and replace its files",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir even though its config or data differ (the same run resumes by itself)",
    )
    _add_allocator(train)
    train.set_defaults(func=_train)


def _add_preprocess(sub) -> None:
    pre = sub.add_parser(
        "preprocess",
        usage="ictp preprocess [CONFIG.yaml] --out DIR [--shard-size N] [--store-neighbours] [--key value ...]",
        help="stream the data of a training config into HDF5 shards + statistics, for data sets larger than memory",
    )
    pre.add_argument("--out", required=True, help="new folder for the shards; train with --train_file DIR")
    pre.add_argument("--shard-size", type=int, default=1000, help="structures per shard file")
    pre.add_argument("--store-neighbours", action="store_true", help="also store neighbour lists (model cutoff)")
    pre.set_defaults(func=_preprocess)


def _add_eval(sub) -> None:
    ev = sub.add_parser("eval", help="evaluate a model on labelled structures")
    ev.add_argument("--model", required=True, help="model file written by ictp train / save_model")
    ev.add_argument("--data", required=True, nargs="+", help="labelled structure files (extxyz, ASE db, .npz)")
    auto = "default: REF_{0} if the file has it, else {0}"
    ev.add_argument("--energy-key", default=None, help=auto.format("energy"))
    ev.add_argument("--forces-key", default=None, help=auto.format("forces"))
    ev.add_argument("--stress-key", default=None, help=auto.format("stress"))
    ev.add_argument("--virials-key", default=None, help=auto.format("virials"))
    ev.add_argument("--batch-size", type=int, default=10)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", help="write the metrics (meV units) to this JSON file")
    ev.add_argument("--memory", type=float, default=0.0, help=MEMORY_HELP)
    _add_allocator(ev)
    ev.add_argument(
        "--write-predictions", help="write the structures with ICTP_energy/ICTP_forces/ICTP_stress to this extxyz file"
    )
    ev.set_defaults(func=_eval)


def _add_md(sub) -> None:
    md = sub.add_parser("md", help="molecular dynamics with ASE (NVE, Langevin NVT, Berendsen NPT)")
    md.add_argument("--model", required=True, nargs="+", help="one model, or several for a committee")
    md.add_argument("--structure", required=True, help="starting structure (any ASE-readable file)")
    md.add_argument("--index", default="0", help="frame of the structure file (ASE index syntax)")
    md.add_argument("--ensemble", choices=["nve", "nvt", "npt"], default="nvt")
    md.add_argument("--temperature", type=float, default=300.0, help="K")
    md.add_argument("--timestep", type=float, default=0.5, help="fs")
    md.add_argument("--steps", type=int, default=1000)
    md.add_argument("--pressure", type=float, default=1.01325e-4, help="GPa, npt")
    md.add_argument("--out", required=True, help="trajectory (.xyz/.extxyz or .traj)")
    md.add_argument("--log", help="CSV log (default: the trajectory name with .csv)")
    md.add_argument("--log-every", type=int, default=10)
    md.add_argument("--min-distance", type=float, default=0.5, help="stop when two atoms come closer (A)")
    md.add_argument("--max-drift", type=float, default=0.05, help="nve: stop when E_tot drifts more (eV/atom)")
    md.add_argument("--seed", type=int, default=0)
    md.add_argument("--device", default="cpu")
    md.add_argument("--dtype", choices=["float32", "float64"], default=None)
    md.add_argument("--memory", type=float, default=0.0, help=MEMORY_HELP)
    _add_allocator(md)
    md.set_defaults(func=_md)


def _add_export_and_demo(sub) -> None:
    export = sub.add_parser("export", help="export a model for LAMMPS (pair_style ictp) and compiled inference")
    export.add_argument("--model", required=True, help="model file written by ictp train / save_model")
    export.add_argument(
        "--out", required=True, help="model-lammps.pt (TorchScript, any device) or model-lammps.pt2 (compiled)"
    )
    export.add_argument("--device", default="cpu", help="device a .pt2 is compiled for (cpu, cuda)")
    export.set_defaults(func=_export)

    demo = sub.add_parser("demo", help="generate data with ASE's EMT, train, evaluate, plot (no download)")
    demo.add_argument("--output-dir", default="demo_output")
    demo.add_argument("--minutes", type=float, default=3.0, help="training time budget")
    demo.set_defaults(func=_demo)


def main(argv: Optional[list[str]] = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    try:
        return args.func(args, extra)
    except (ConfigError, DataError, FileNotFoundError, ValueError) as exc:
        print(f"ictp {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
