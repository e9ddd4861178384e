"""Learning curves of ICTP and MACE trained on the same split with the same settings, by epoch and by
wall-clock, over several seeds; then both best models tested on the same structures by the same code.

    pip install -e '.[bench]'                     # mace-torch, the optional benchmark extra
    python benchmarks/vs_mace.py rmd17 --data ../shared/data/rmd17 --molecule ethanol --train-size 50 --minutes 10
    python benchmarks/vs_mace.py acac --data ../shared/data/acac --minutes 10 --seeds 0 1 2
    # the paper's rMD17 hidden rank, both codes, side by side on one thread each:
    python benchmarks/vs_mace.py rmd17 --data ../shared/data/rmd17 --max-rank 2 --minutes 10 --side-by-side --threads 1
    python benchmarks/vs_mace.py 3bpa --data ../shared/data/3bpa --minutes 10
    python benchmarks/vs_mace.py rmd17 --data ../shared/data/rmd17 --epochs 100 --codes ictp   # ICTP only

Data (both codes read the same extxyz files written here, REF_energy / REF_forces):
  rmd17  train_size + 50 valid drawn (seeded) from the split-01 train file, tested on its test file (1000).
  acac   train_size + 50 valid from train_300K, tested on test_MD_300K (650); E0s from isolated_atoms.xyz.
  3bpa   train_size + 50 valid from train_300K, the remaining train_300K frames are the test set; E0s
         from iso_atoms.xyz.
--test-size N tests both codes on the same N structures of the test set (drawn once, whatever the seed).
rMD17 has no isolated atoms: both codes use least-squares ("average") E0s.

Both: float64, 2 layers, r_c = 5 Å, 8 Bessel functions, l_max = 3, ν = 3, C channels, hidden rank L;
batch 5 (valid 10); Adam(AMSGrad) lr 0.01, ReduceLROnPlateau (factor 0.8, patience 5 epochs), EMA
0.99, weight decay 5e-7; MACE's "weighted" loss w_E · mean((ΔE/N)²) + w_F · mean(ΔF²), w_E = 1,
w_F = 100 (ICTP: energy_mode per_atom, reduction mean); validation every epoch.

Budget: --epochs caps both codes' epochs; --minutes caps their wall-clock (ICTP stops at the first
epoch end past it; MACE, which has no time limit, is stopped there too and then finishes from its
best checkpoint). --side-by-side trains the two codes at the same time, each on --threads threads, so that
both see the same machine load (on 2 cores: --threads 1). Output: a table (per seed, and mean ± std over seeds) of validation force RMSE at equal
epochs and the test errors of each best model, curves.png (validation force RMSE against epoch
and against wall-clock), and results.json, in --work-dir.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml
from ase.data import chemical_symbols
from ase.io import read, write

MACE_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+).*Epoch (\d+):.*RMSE_F=\s*([\d.]+)")


def _frames(samples) -> list:
    out = []
    for s in samples:
        atoms = s.atoms.copy()
        atoms.calc = None
        atoms.info = {"REF_energy": s.energy, "config_type": "Default"}
        atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
        atoms.arrays["REF_forces"] = s.forces
        out.append(atoms)
    return out


def split(args, seed: int, work: Path) -> dict:
    """train / valid / test extxyz files for this seed, drawn as `ictp train` draws them (valid first)."""
    from ictp_model.data.io import read_samples

    if args.dataset == "rmd17":
        pool = read_samples(args.data / f"rmd17_{args.molecule}_train_01.npz")
        test = read_samples(args.data / f"rmd17_{args.molecule}_test_01.npz")
    else:
        pool = [s for s in read_samples(args.data / "train_300K.xyz") if not s.is_isolated_atom]
        test = read_samples(args.data / "test_MD_300K.xyz") if args.dataset == "acac" else None
    order = np.random.default_rng(seed).permutation(len(pool))
    valid = [pool[i] for i in order[: args.valid_size]]
    train = [pool[i] for i in order[args.valid_size : args.valid_size + args.train_size]]
    if test is None:  # 3BPA: the frames not drawn are the test set
        test = [pool[i] for i in order[args.valid_size + args.train_size :]]
    if args.test_size is not None and args.test_size < len(test):  # the same subset for every seed
        test = [test[i] for i in sorted(np.random.default_rng(12345).permutation(len(test))[: args.test_size])]
    paths = {}
    for name, samples in (("train", train), ("valid", valid), ("test", test)):
        paths[name] = work / f"{name}.xyz"
        write(paths[name], _frames(samples), format="extxyz")
    return paths


def isolated_energies(args) -> dict:
    if args.dataset == "rmd17":
        return {}
    name = "isolated_atoms.xyz" if args.dataset == "acac" else "iso_atoms.xyz"
    return {int(a.numbers[0]): float(a.get_potential_energy()) for a in read(args.data / name, index=":")}


#: glibc keeps freed memory (what `ictp train` does by itself on CPU): the same for both codes
KEEP_FREED_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "200000000000", "MALLOC_TOP_PAD_": str(1 << 30)}


def thread_env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads)}


def run(command: list[str], cwd: Path, log: Path, threads: int) -> float:
    start = time.perf_counter()
    with open(log, "w") as handle:
        result = subprocess.run(command, cwd=cwd, env=thread_env(threads), stdout=handle, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed; see {log}")
    return time.perf_counter() - start


def train_ictp(paths: dict, e0s: dict, args, seed: int, work: Path) -> dict:
    out = work / "ictp"
    config = dict(
        train_file=str(paths["train"]), valid_file=str(paths["valid"]), energy_key="REF_energy",
        forces_key="REF_forces", E0s={chemical_symbols[z]: e for z, e in e0s.items()} if e0s else "average",
        model=dict(channels=args.channels, max_rank=args.max_rank, edge_rank=3, correlation=3, layers=2,
                   cutoff=5.0, variant=args.variant, dtype="float64"),
        batch_size=5, valid_batch_size=10, max_epochs=args.epochs or 100000, lr=0.01, scheduler_patience=5,
        lr_factor=0.8, ema_decay=0.99, weight_decay=5e-7,
        loss=dict(energy=1.0, forces=100.0, energy_mode="per_atom", reduction="mean"),
        seed=seed, output_dir=str(out), progress=False,
        max_time=None if args.minutes is None else 60.0 * args.minutes,
    )  # fmt: skip
    for option in args.ictp_option:  # key=value (YAML value), e.g. ema_warmup=false or model.odd=true
        key, _, value = option.partition("=")
        section, _, name = key.rpartition(".")
        (config[section] if section else config)[name] = yaml.safe_load(value)
    (work / "ictp.yaml").write_text(yaml.safe_dump(config))
    shutil.rmtree(out, ignore_errors=True)  # this benchmark's own folder from an earlier invocation
    run(
        [sys.executable, "-m", "ictp_model.cli.main", "train", str(work / "ictp.yaml"), "--allocator", args.allocator],
        work,
        work / "ictp.log",
        args.threads,
    )
    import csv

    with open(out / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    from ictp_model.calculators.ase import ICTPCalculator

    return {
        "curve": [[int(r["epoch"]), float(r["time"]), float(r["valid_forces_rmse"])] for r in rows],
        "calculator": ICTPCalculator(out / "model.pt"),
    }


def mace_command(paths: dict, e0s: dict, args, seed: int, work: Path, epochs: int, name: str) -> list[str]:
    return [
        sys.executable, "-m", "mace.cli.run_train", f"--name={name}", f"--work_dir={work / name}",
        f"--train_file={paths['train']}", f"--valid_file={paths['valid']}", "--energy_key=REF_energy",
        "--forces_key=REF_forces", f"--E0s={e0s if e0s else 'average'}", "--model=MACE",
        f"--num_channels={args.channels}", f"--max_L={args.max_rank}", "--max_ell=3", "--correlation=3",
        "--num_interactions=2", "--r_max=5.0", "--num_radial_basis=8", "--batch_size=5", "--valid_batch_size=10",
        "--lr=0.01", "--scheduler_patience=5", "--lr_factor=0.8", "--weight_decay=5e-7", "--ema", "--ema_decay=0.99",
        "--amsgrad", "--loss=weighted", "--energy_weight=1.0", "--forces_weight=100.0", "--default_dtype=float64",
        "--device=cpu", f"--seed={seed}", f"--max_num_epochs={epochs}", "--eval_interval=1", "--patience=100000",
        "--save_cpu",
    ]  # fmt: skip


def mace_curve(folder: Path) -> tuple[list, datetime]:
    """[[epoch, seconds since the start of training, valid force RMSE]] from MACE's logs."""
    start, points = None, []
    for log in folder.rglob("*.log"):
        if log.name.endswith("_debug.log"):
            continue
        for line in log.read_text().splitlines():
            if start is None and ("Started training" in line or "Initial:" in line):
                start = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
            match = MACE_LINE.match(line)
            if match:
                stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f")
                points.append((int(match.group(2)) + 1, stamp, float(match.group(3))))  # MACE counts from 0
    if start is None:
        raise SystemExit(f"no start of training found in the logs under {folder}")
    return [[e, (t - start).total_seconds(), f] for e, t, f in sorted(points)], start


def run_mace_for(command: list[str], folder: Path, log: Path, threads: int, seconds: float) -> None:
    """Run MACE training until the first epoch that ends past `seconds` (counted, like ICTP's
    max_time, from its "Started training" line), stop it, then let MACE finish from its own best
    checkpoint (--restart_latest with no epochs left): it loads the best (EMA) weights, evaluates
    and writes mace.model exactly as at the end of a normal run."""
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command, cwd=folder.parent, env=thread_env(threads), stdout=handle, stderr=subprocess.STDOUT
        )
        while process.poll() is None:
            time.sleep(1.0)
            try:
                curve, _ = mace_curve(folder)
            except SystemExit:  # not started yet
                continue
            if curve and curve[-1][1] >= seconds:
                time.sleep(5.0)  # the epoch's checkpoint is saved right after its log line
                process.terminate()
                process.wait()
                break
    if process.returncode not in (0, -15):
        raise SystemExit(f"{' '.join(map(str, command))} failed; see {log}")
    if not any(folder.rglob("mace*.model")):
        finish = [a for a in command if not a.startswith("--max_num_epochs=")] + [
            "--max_num_epochs=0",
            "--restart_latest",
        ]
        run(finish, folder.parent, log.with_name(log.stem + "-finish.log"), threads)


def train_mace(paths: dict, e0s: dict, args, seed: int, work: Path) -> dict:
    shutil.rmtree(work / "mace", ignore_errors=True)
    command = mace_command(paths, e0s, args, seed, work, args.epochs or 100000, "mace")
    if args.minutes is None:
        run(command, work, work / "mace.log", args.threads)
    else:
        run_mace_for(command, work / "mace", work / "mace.log", args.threads, 60.0 * args.minutes)
    from mace.calculators import MACECalculator

    curve, _ = mace_curve(work / "mace")
    model = sorted((work / "mace").rglob("mace*.model"))
    return {
        "curve": curve,
        "calculator": MACECalculator(model_paths=str(model[0]), device="cpu", default_dtype="float64"),
    }


def train_codes(paths: dict, e0s: dict, args, seed: int, work: Path) -> dict:
    """{"ICTP": ..., "MACE": ...}: one after the other, or side by side (each code's own subprocess)."""
    trainers = {code.upper(): train_ictp if code == "ictp" else train_mace for code in args.codes}
    print(f"seed {seed}: training {', '.join(trainers)}{' side by side' if args.side_by_side else ''} ...", flush=True)
    if not args.side_by_side:
        return {code: train(paths, e0s, args, seed, work) for code, train in trainers.items()}
    with ThreadPoolExecutor(len(trainers)) as pool:  # the work is in subprocesses; threads only wait
        futures = {code: pool.submit(train, paths, e0s, args, seed, work) for code, train in trainers.items()}
        return {code: future.result() for code, future in futures.items()}


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
        "energy_mean_error": float(np.mean(e)), "forces_mae": float(np.mean(np.abs(f))),
        "forces_rmse": float(np.sqrt(np.mean(f**2))), "n": len(e),
    }  # fmt: skip


def at_epoch(curve: list, epoch: int) -> float:
    rows = [f for e, _, f in curve if e == epoch]
    return rows[0] if rows else float("nan")


def at_time(curve: list, seconds: float) -> float:
    """The validation force RMSE of the last epoch finished by ``seconds``."""
    rows = [f for _, t, f in curve if t <= seconds]
    return rows[-1] if rows else float("nan")


def plot(results: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = {"ICTP": "tab:blue", "MACE": "tab:red"}
    for seed, runs in results.items():
        for code, run_ in runs.items():
            curve = np.array(run_["curve"])
            label = code if seed == min(results) else None
            axes[0].semilogy(curve[:, 0], curve[:, 2], color=colours[code], alpha=0.7, label=label)
            axes[1].semilogy(curve[:, 1] / 60, curve[:, 2], color=colours[code], alpha=0.7, label=label)
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training wall-clock (min)")
    for ax in axes:
        ax.set_ylabel("validation force RMSE (meV/Å)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(results: dict, checkpoints: list[int]) -> None:
    codes = sorted({c for runs in results.values() for c in runs})
    print("\nvalidation force RMSE (meV/A) at equal epochs; test errors of the best model (meV, meV/A)")
    header = f"{'seed':>4} {'code':<5} {'epochs':>6} {'min':>5} " + " ".join(
        f"{'ep ' + str(e):>7}" for e in checkpoints
    )
    print(header + f" {'E MAE':>7} {'E RMSE':>7} {'E mean':>7} {'F MAE':>7} {'F RMSE':>7}")
    for seed, runs in results.items():
        for code in codes:
            r = runs[code]
            t = r["test"]
            print(
                f"{seed:>4} {code:<5} {r['curve'][-1][0]:>6} {r['curve'][-1][1] / 60:>5.1f} "
                + " ".join(f"{at_epoch(r['curve'], e):>7.2f}" for e in checkpoints)
                + f" {t['energy_mae']:>7.2f} {t['energy_rmse']:>7.2f} {t['energy_mean_error']:>7.2f} "
                f"{t['forces_mae']:>7.2f} {t['forces_rmse']:>7.2f}"
            )
    for code in codes:
        rows = [runs[code] for runs in results.values()]
        f = np.array([r["test"]["forces_rmse"] for r in rows])
        e = np.array([r["test"]["energy_rmse"] for r in rows])
        print(
            f"{code}: test F RMSE {f.mean():.2f} ± {f.std():.2f}, E RMSE {e.mean():.2f} ± {e.std():.2f} over {len(rows)} seeds"
        )
    if len(codes) == 2:
        ratio_table(results)


def ratio_table(results: dict) -> None:
    """ICTP / MACE per seed: validation force RMSE at equal epochs (MACE's last, or the shorter run's)
    and at equal wall-clock (the shorter run's end); test errors of the best models (each code's
    whole budget); and each code's mean signed test energy error over its energy RMSE."""
    print(
        f"\n{'seed':>4} {'epoch':>5} {'F@epoch':>8} {'min':>6} {'F@min':>8} {'test F':>7} {'test E':>7}"
        f" {'ICTP E mean/RMSE':>16} {'MACE E mean/RMSE':>16}"
    )
    rows = []
    for seed, runs in results.items():
        ictp, mace = runs["ICTP"], runs["MACE"]
        epoch = min(ictp["curve"][-1][0], mace["curve"][-1][0])
        end = min(ictp["curve"][-1][1], mace["curve"][-1][1])
        row = [
            at_epoch(ictp["curve"], epoch) / at_epoch(mace["curve"], epoch),
            at_time(ictp["curve"], end) / at_time(mace["curve"], end),
            ictp["test"]["forces_rmse"] / mace["test"]["forces_rmse"],
            ictp["test"]["energy_rmse"] / mace["test"]["energy_rmse"],
        ]
        rows.append(row)
        offsets = [r["test"]["energy_mean_error"] / r["test"]["energy_rmse"] for r in (ictp, mace)]
        print(
            f"{seed:>4} {epoch:>5} {row[0]:>8.3f} {end / 60:>6.1f} {row[1]:>8.3f} {row[2]:>7.3f} {row[3]:>7.3f}"
            f" {offsets[0]:>16.2f} {offsets[1]:>16.2f}"
        )
    mean, std = np.mean(rows, axis=0), np.std(rows, axis=0)
    print(
        f"{'mean':>4} {'':>5} {mean[0]:>8.3f} {'':>6} {mean[1]:>8.3f} {mean[2]:>7.3f} {mean[3]:>7.3f}\n"
        f"{'std':>4} {'':>5} {std[0]:>8.3f} {'':>6} {std[1]:>8.3f} {std[2]:>7.3f} {std[3]:>7.3f}\n"
        "(ratios ICTP / MACE: validation force RMSE at equal epochs and at equal wall-clock; test force and "
        "energy RMSE of the best models)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=["rmd17", "acac", "3bpa"])
    parser.add_argument("--data", type=Path, required=True, help="e.g. ../shared/data/rmd17")
    parser.add_argument("--molecule", default="ethanol", help="rMD17 molecule")
    parser.add_argument("--train-size", type=int, default=None, help="default: rmd17 50, acac 450, 3bpa 200")
    parser.add_argument("--valid-size", type=int, default=50)
    parser.add_argument("--test-size", type=int, default=None, help="test on this many (seeded) of the test set")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget of each code and seed")
    parser.add_argument("--epochs", type=int, default=None, help="epoch budget of each code and seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--codes", nargs="+", default=["ictp", "mace"], choices=["ictp", "mace"])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--max-rank", type=int, default=1, help="L of the hidden features (MACE max_L)")
    parser.add_argument("--variant", default="sym", choices=["full", "sym", "sym+lt"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--side-by-side", action="store_true", help="train both codes at the same time")
    parser.add_argument(
        "--allocator",
        choices=["keep", "system"],
        default="keep",
        help="keep: both codes run with glibc keeping freed memory (ictp train's default on CPU); system: neither",
    )
    parser.add_argument("--ictp-option", action="append", default=[], help="extra ICTP config key=value (ablations)")
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.minutes is None and args.epochs is None:
        raise SystemExit("give --minutes, --epochs or both")
    if args.allocator == "keep":  # read by glibc in each process these start
        os.environ.update(KEEP_FREED_MEMORY)
    args.train_size = args.train_size or {"rmd17": 50, "acac": 450, "3bpa": 200}[args.dataset]
    if "mace" in args.codes:
        try:
            import mace  # noqa: F401
        except ImportError:
            raise SystemExit("mace-torch is not installed: pip install -e '.[bench]'") from None

    root = args.work_dir or Path(tempfile.mkdtemp(prefix="ictp-vs-mace-"))
    e0s = isolated_energies(args)
    results = {}
    for seed in args.seeds:
        work = root / f"seed{seed}"
        work.mkdir(parents=True, exist_ok=True)
        paths = split(args, seed, work)
        runs = train_codes(paths, e0s, args, seed, work)
        for run_ in runs.values():
            run_["test"] = test_errors(run_.pop("calculator"), paths["test"])
        results[seed] = runs
        (root / "results.json").write_text(json.dumps(results, indent=1))
    name = f"{args.dataset}{' ' + args.molecule if args.dataset == 'rmd17' else ''} N={args.train_size}"
    print(
        f"\n{name}: C={args.channels}, L={args.max_rank}, l_max=3, nu=3, float64, {args.threads} threads"
        f"{' each, side by side' if args.side_by_side else ''}, "
        f"budget {args.minutes} min / {args.epochs} epochs, seeds {args.seeds}; load average {os.getloadavg()[0]:.2f}"
    )
    shortest = min(r["curve"][-1][0] for runs in results.values() for r in runs.values())
    checkpoints = sorted({e for e in (10, 25, 50, 100, 200, 400) if e <= shortest} | {shortest})
    summary(results, checkpoints)
    plot(results, root / "curves.png", name)
    print(f"curves: {root / 'curves.png'}; data: {root / 'results.json'}")


if __name__ == "__main__":
    main()
