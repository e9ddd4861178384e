"""Molecular dynamics through ASE with safety stops: what `ictp md` runs.

The run stops with a clear message, keeping everything written so far, when it becomes
unphysical: two atoms closer than `min_distance`, the total energy drifting more than
`max_drift` eV/atom from its start (NVE only), or a NaN in energies or forces.
"""

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms, units
from ase.io import Trajectory, write
from ase.md.langevin import Langevin
from ase.md.nptberendsen import NPTBerendsen
from ase.md.velocitydistribution import Stationary, ZeroRotation, thermalize_momenta
from ase.md.verlet import VelocityVerlet

from ictp_model.data.neighbours import neighbour_list

ENSEMBLES = ("nve", "nvt", "npt")


@dataclass
class MDSettings:
    ensemble: str = "nvt"
    temperature: float = 300.0  # K
    timestep: float = 0.5  # fs
    steps: int = 1000
    log_every: int = 10
    friction: float = 0.01  # 1/fs, Langevin
    pressure: float = 1.01325e-4  # GPa (1 atm), NPT
    taut: float = 100.0  # fs, NPT thermostat
    taup: float = 1000.0  # fs, NPT barostat
    compressibility: float = 4.57e-5  # 1/bar, NPT (water-like default)
    min_distance: float = 0.5  # Å
    max_drift: float = 0.05  # eV/atom, NVE
    seed: int = 0


class UnphysicalError(RuntimeError):
    """The simulation left the physically sensible region."""


def _min_distance(atoms: Atoms, below: float) -> float:
    """Smallest interatomic distance if it is below ``below`` (else ``below``); vesin, because
    ASE's own neighbour list costs more than the model for small molecules."""
    if len(atoms) < 2:
        return math.inf
    positions, cell = atoms.get_positions(), np.asarray(atoms.cell[:])
    i, j, shifts = neighbour_list(positions, cell, atoms.pbc, below)
    if len(i) == 0:
        return below
    return float(np.linalg.norm(positions[j] - positions[i] + shifts @ cell, axis=1).min())


def make_dynamics(atoms: Atoms, settings: MDSettings):
    dt = settings.timestep * units.fs
    if settings.ensemble == "nve":
        return VelocityVerlet(atoms, dt)
    if settings.ensemble == "nvt":
        return Langevin(
            atoms,
            dt,
            temperature_K=settings.temperature,
            friction=settings.friction / units.fs,
            fixcm=False,  # ASE's fixcm=True does not sample NVT exactly; momenta start at zero total
            rng=np.random.default_rng(settings.seed),
        )
    if not atoms.pbc.all():
        raise ValueError("npt needs a structure periodic in all three directions")
    return NPTBerendsen(
        atoms,
        dt,
        temperature_K=settings.temperature,
        pressure_au=settings.pressure * units.GPa,
        taut=settings.taut * units.fs,
        taup=settings.taup * units.fs,
        compressibility_au=settings.compressibility / units.bar,
    )


def check_state(atoms: Atoms, step: int, epot: float, forces: np.ndarray, drift: float, settings: MDSettings) -> None:
    """Raises UnphysicalError for NaN energies or forces, atoms that came too close, or (NVE) an
    energy drift beyond the threshold."""
    if not (np.isfinite(epot) and np.all(np.isfinite(forces))):
        raise UnphysicalError(f"step {step}: NaN or inf in the energy or forces")
    closest = _min_distance(atoms, settings.min_distance)
    if closest < settings.min_distance:
        raise UnphysicalError(f"step {step}: atoms {closest:.3f} A apart (threshold {settings.min_distance} A)")
    if settings.ensemble == "nve" and drift > settings.max_drift:
        raise UnphysicalError(f"step {step}: total energy drifted {drift:.4f} eV/atom (threshold {settings.max_drift})")


class MDRecorder:
    """The CSV log and the trajectory of a run, written as it goes (every log_every steps)."""

    def __init__(self, atoms: Atoms, trajectory: Path, handle, log_every: int, timestep: float):
        self.committee = bool(getattr(atoms.calc, "committee", False))
        fields = ["step", "time_ps", "temperature_K", "epot_eV", "etot_eV", "max_force_eV_A"]
        self.writer = csv.DictWriter(handle, fieldnames=fields + (["energy_std_eV"] if self.committee else []))
        self.writer.writeheader()
        self.handle, self.trajectory, self.log_every, self.timestep = handle, trajectory, log_every, timestep
        self.traj = Trajectory(str(trajectory), "w") if trajectory.suffix == ".traj" else None

    def record(self, atoms: Atoms, step: int, epot: float, ekin: float, forces: np.ndarray) -> None:
        if step % self.log_every:
            return
        row = {
            "step": step,
            "time_ps": step * self.timestep / 1000.0,
            "temperature_K": atoms.get_temperature(),
            "epot_eV": epot,
            "etot_eV": epot + ekin,
            "max_force_eV_A": float(np.linalg.norm(forces, axis=1).max()),
        }
        if self.committee:
            row["energy_std_eV"] = atoms.calc.results["energy_std"]
        self.writer.writerow(row)
        self.handle.flush()
        if self.traj is not None:
            self.traj.write(atoms)
        else:
            write(self.trajectory, atoms, format="extxyz", append=step > 0)

    def close(self) -> None:
        if self.traj is not None:
            self.traj.close()


def prepare_velocities(atoms: Atoms, settings: MDSettings) -> None:
    """Maxwell–Boltzmann velocities at the temperature, without drift (and rotation, for molecules)."""
    thermalize_momenta(atoms, temperature_K=settings.temperature, rng=np.random.default_rng(settings.seed))
    Stationary(atoms)
    if not atoms.pbc.any():
        ZeroRotation(atoms)


def run_md(
    atoms: Atoms,
    settings: MDSettings,
    trajectory: Path,
    log_file: Path,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run MD with ``atoms.calc`` already set; writes the trajectory (every log_every steps) and a
    CSV log as it goes.  Returns a summary; raises UnphysicalError after writing what it has."""
    if settings.ensemble not in ENSEMBLES:
        raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {settings.ensemble!r}")
    prepare_velocities(atoms, settings)
    dynamics = make_dynamics(atoms, settings)
    start_energy: Optional[float] = None
    started = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=settings.steps, desc=f"md {settings.ensemble}", disable=None if progress else True, leave=False)
    with open(log_file, "w", newline="") as handle:
        recorder = MDRecorder(atoms, trajectory, handle, settings.log_every, settings.timestep)
        step = 0
        try:
            while True:
                epot, forces, ekin = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_kinetic_energy()
                start_energy = epot + ekin if start_energy is None else start_energy
                drift = abs(epot + ekin - start_energy) / len(atoms)
                check_state(atoms, step, epot, forces, drift, settings)
                recorder.record(atoms, step, epot, ekin, forces)
                if step >= settings.steps:
                    break
                dynamics.run(1)
                step += 1
                bar.update(1)
        except UnphysicalError as exc:
            echo(f"ictp md: stopped: {exc}; trajectory and log up to this point are kept")
            raise
        finally:
            bar.close()
            recorder.close()
    elapsed = time.perf_counter() - started
    ns_per_day = settings.steps * settings.timestep * 1e-6 / (elapsed / 86400.0)
    return {"steps": settings.steps, "seconds": elapsed, "ns_per_day": ns_per_day, "final_drift_eV_per_atom": drift}
