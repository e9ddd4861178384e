"""ICTP and MACE trained on the same split, with the same batch size, loss, optimiser settings and
the same wall-clock budget on this machine, then tested on the same file with the same code.

    pip install mace-torch            # the optional benchmark extra: pip install -e '.[bench]'
    python benchmarks/vs_mace.py --data ../shared/data/acac --minutes 15

Data: AcAc (BOTNet data sets): train_size + valid_size structures drawn (seeded) from
train_300K.xyz, tested on test_MD_300K.xyz; E0s from isolated_atoms.xyz. Both codes read the same
extxyz files written here (REF_energy / REF_forces).

Both: float64, 2 layers, r_c = 5 Å, 8 Bessel functions, l_max = 3, ν = 3, C channels, hidden rank
L; batch 5; Adam(AMSGrad) lr 0.01, ReduceLROnPlateau (factor 0.8, patience 5 epochs), EMA 0.99;
MACE's "weighted" loss = w_E · mean((ΔE/N)²) + w_F · mean(ΔF²) with w_E = 1, w_F = 100 (ICTP:
energy_mode per_atom, reduction mean); validation every epoch.

Budget: ICTP stops at the first epoch end past the budget (`max_time`). MACE has no time limit, so
a 3-epoch calibration run measures its epoch time (from its log's timestamps) and the real run
gets as many epochs as fit in the budget. The table reports the training time each one used.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml
from ase.io import read, write

TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+).*Epoch (\d+):")


def split(data: Path, train_size: int, valid_size: int, seed: int, work: Path) -> dict:
    frames = read(data / "train_300K.xyz", index=":")
    order = np.random.default_rng(seed).permutation(len(frames))
    sets = {
        "train": [frames[i] for i in order[:train_size]],
        "valid": [frames[i] for i in order[train_size : train_size + valid_size]],
        "test": read(data / "test_MD_300K.xyz", index=":"),
    }
    paths = {}
    for name, atoms_list in sets.items():
        out = []
        for atoms in atoms_list:
            copy = atoms.copy()
            copy.calc = None
            copy.info = {"REF_energy": atoms.get_potential_energy(), "config_type": "Default"}
            copy.arrays = {k: v for k, v in copy.arrays.items() if k in ("numbers", "positions")}
            copy.arrays["REF_forces"] = atoms.get_forces()
            out.append(copy)
        paths[name] = work / f"{name}.xyz"
        write(paths[name], out, format="extxyz")
    return paths


def isolated_energies(data: Path) -> dict[int, float]:
    return {int(a.numbers[0]): float(a.get_potential_energy()) for a in read(data / "isolated_atoms.xyz", index=":")}


def run(command: list[str], cwd: Path, log: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count())}
    start = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed; see {log}")
    return time.perf_counter() - start


def train_ictp(paths: dict, e0s: dict, args, work: Path) -> dict:
    from ase.data import chemical_symbols

    out = work / "ictp"
    config = dict(
        train_file=str(paths["train"]), valid_file=str(paths["valid"]), energy_key="REF_energy",
        forces_key="REF_forces", E0s={chemical_symbols[z]: e for z, e in e0s.items()},
        model=dict(preset="acac", channels=args.channels, max_rank=args.max_rank, edge_rank=3, correlation=3,
                   layers=2, cutoff=5.0, variant=args.variant),
        batch_size=5, valid_batch_size=10, max_epochs=100000, lr=0.01, scheduler_patience=5, lr_factor=0.8,
        ema_decay=0.99, loss=dict(energy=1.0, forces=100.0, energy_mode="per_atom", reduction="mean"),
        dtype="float64", seed=args.seed, output_dir=str(out), progress=False, max_time=60.0 * args.minutes,
    )  # fmt: skip
    (work / "ictp.yaml").write_text(yaml.safe_dump(config))
    run([sys.executable, "-m", "ictp_model.cli.main", "train", str(work / "ictp.yaml")], work, work / "ictp.log")
    rows = (out / "log.csv").read_text().splitlines()[1:]
    from ictp_model.calculators.ase import ICTPCalculator

    return {
        "epochs": len(rows),
        "train_minutes": float(rows[-1].split(",")[-1]) / 60,
        "calculator": ICTPCalculator(out / "model.pt"),
    }


def mace_command(paths: dict, e0s: dict, args, work: Path, epochs: int, name: str) -> list[str]:
    return [
        sys.executable, "-m", "mace.cli.run_train", f"--name={name}", f"--work_dir={work / name}",
        f"--train_file={paths['train']}", f"--valid_file={paths['valid']}", "--energy_key=REF_energy",
        "--forces_key=REF_forces", f"--E0s={e0s}", "--model=MACE", f"--num_channels={args.channels}",
        f"--max_L={args.max_rank}", "--max_ell=3", "--correlation=3", "--num_interactions=2", "--r_max=5.0",
        "--num_radial_basis=8", "--batch_size=5", "--valid_batch_size=10", "--lr=0.01", "--scheduler_patience=5",
        "--ema", "--ema_decay=0.99", "--amsgrad", "--loss=weighted", "--energy_weight=1.0", "--forces_weight=100.0",
        "--default_dtype=float64", "--device=cpu", f"--seed={args.seed}", f"--max_num_epochs={epochs}",
        "--eval_interval=1", "--patience=100000", "--save_cpu",
    ]  # fmt: skip


def logs(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.log") if not p.name.endswith("_debug.log")]


def epoch_times(folder: Path) -> list[datetime]:
    stamps = []
    for log in logs(folder):
        for line in log.read_text().splitlines():
            match = TIMESTAMP.match(line)
            if match:
                stamps.append(datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f"))
    return sorted(stamps)


def started(folder: Path) -> datetime:
    for log in logs(folder):
        for line in log.read_text().splitlines():
            if "Started training" in line or "Initial:" in line:
                return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
    raise SystemExit(f"no start of training found in the logs under {folder}")


def train_mace(paths: dict, e0s: dict, args, work: Path) -> dict:
    run(mace_command(paths, e0s, args, work, 3, "calibrate"), work, work / "mace-calibrate.log")
    stamps = epoch_times(work / "calibrate")
    per_epoch = float(np.median([(b - a).total_seconds() for a, b in zip(stamps, stamps[1:])]))
    first = (stamps[0] - started(work / "calibrate")).total_seconds()  # with its one-off warm-up
    epochs = 1 + max(int((60.0 * args.minutes - first) / per_epoch), 0)
    print(
        f"MACE calibration: first epoch {first:.1f} s, then {per_epoch:.1f} s -> {epochs} epochs in {args.minutes} min"
    )
    run(mace_command(paths, e0s, args, work, epochs, "mace"), work, work / "mace.log")
    stamps = epoch_times(work / "mace")
    from mace.calculators import MACECalculator

    model = sorted((work / "mace").rglob("mace*.model"))
    return {
        "epochs": epochs,
        "train_minutes": (stamps[-1] - started(work / "mace")).total_seconds() / 60,
        "calculator": MACECalculator(model_paths=str(model[0]), device="cpu", default_dtype="float64"),
    }


def test_errors(calculator, path: Path) -> dict:
    e_err, f_err = [], []
    for atoms in read(path, index=":"):
        ref_e, ref_f = atoms.info["REF_energy"], atoms.arrays["REF_forces"]
        atoms.calc = calculator
        e_err.append(atoms.get_potential_energy() - ref_e)
        f_err.append((atoms.get_forces() - ref_f).reshape(-1))
    e, f = 1000 * np.array(e_err), 1000 * np.concatenate(f_err)
    return {
        "energy_mae": float(np.mean(np.abs(e))), "energy_rmse": float(np.sqrt(np.mean(e**2))),
        "forces_mae": float(np.mean(np.abs(f))), "forces_rmse": float(np.sqrt(np.mean(f**2))), "n": len(e),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the AcAc folder, e.g. ../shared/data/acac")
    parser.add_argument("--minutes", type=float, default=15.0, help="training budget of each code")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--max-rank", type=int, default=1, help="L of the hidden features (MACE max_L)")
    parser.add_argument("--variant", default="sym", choices=["full", "sym", "sym+lt"])
    parser.add_argument("--train-size", type=int, default=450)
    parser.add_argument("--valid-size", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    if not (args.data / "train_300K.xyz").is_file():
        raise SystemExit(f"{args.data}/train_300K.xyz not found (expected the AcAc folder of ../shared/data)")
    try:
        import mace  # noqa: F401
    except ImportError:
        raise SystemExit("mace-torch is not installed: pip install mace-torch (or pip install -e '.[bench]')") from None

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ictp-vs-mace-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = split(args.data, args.train_size, args.valid_size, args.seed, work)
    e0s = isolated_energies(args.data)
    results = {"ICTP " + args.variant: train_ictp(paths, e0s, args, work), "MACE": train_mace(paths, e0s, args, work)}
    print(
        f"\nAcAc, {args.train_size} train + {args.valid_size} valid, tested on test_MD_300K; C={args.channels}, "
        f"L={args.max_rank}, l_max=3, nu=3, float64, budget {args.minutes} min each, {os.cpu_count()} threads"
    )
    print(f"{'model':<10} {'epochs':>6} {'train min':>9} {'E MAE':>7} {'E RMSE':>7} {'F MAE':>7} {'F RMSE':>7}")
    table = {}
    for name, result in results.items():
        m = test_errors(result.pop("calculator"), paths["test"])
        table[name] = {**result, **m}
        print(
            f"{name:<10} {result['epochs']:>6} {result['train_minutes']:>9.1f} {m['energy_mae']:>7.2f} "
            f"{m['energy_rmse']:>7.2f} {m['forces_mae']:>7.2f} {m['forces_rmse']:>7.2f}"
        )
    print("(energies in meV, forces in meV/A)")
    (work / "vs_mace.json").write_text(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
