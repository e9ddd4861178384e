"""Reading labelled structures: extxyz / any ASE-readable file, ASE db, rMD17 and MD22 .npz.

Units are eV and Å; stresses use the ASE sign (positive = tensile) in eV/Å³.  rMD17 and MD22
.npz files are in kcal/mol and kcal/mol/Å and are converted (1 kcal/mol = 0.0433641 eV).
Every problem is reported as one DataError naming the file, the frame and the key.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms
from ase.io import iread
from ase.units import kcal, mol

from .neighbours import check_min_distance

KCAL_PER_MOL = kcal / mol  # eV
ISOLATED_ATOM_TYPES = {"isolatedatom", "isolated_atom"}


class DataError(ValueError):
    """A data file cannot be used; the message names file, frame and key."""

    @classmethod
    def at(cls, path, message: str, frame: Optional[int] = None, key: Optional[str] = None) -> "DataError":
        """'{path}: frame {frame}: key '{key}': {message}', with '-' for a frame or key that does not apply."""
        return cls(f"{path}: frame {'-' if frame is None else frame}: key '{'-' if key is None else key}': {message}")


@dataclass(frozen=True)
class Keys:
    """Where labels live. A key left as None is found automatically: `REF_<name>` when the frame
    has it (MACE's convention, and in active-learning files the plain names often hold a previous
    model's predictions), otherwise the plain name. Within one file every frame must take a label
    from the same key, or the choice is refused as ambiguous. ASE >= 3.23 moves plain
    `energy`/`forces`/`stress` into a calculator; those names are looked up there too."""

    energy: Optional[str] = None
    forces: Optional[str] = None
    stress: Optional[str] = None
    virials: Optional[str] = None
    weight: str = "config_weight"


@dataclass
class Sample:
    """One labelled structure. stress is None when the frame has none."""

    atoms: Atoms
    energy: Optional[float]
    forces: Optional[np.ndarray]
    stress: Optional[np.ndarray] = None
    weight: float = 1.0
    config_type: str = "Default"
    source: str = ""
    frame: int = 0
    extra: dict = field(default_factory=dict)
    label_keys: dict = field(default_factory=dict)  # quantity -> the key its label was read from

    @property
    def is_isolated_atom(self) -> bool:
        return len(self.atoms) == 1 and self.config_type.lower() in ISOLATED_ATOM_TYPES


def _calc_value(atoms: Atoms, name: str):
    calc = atoms.calc
    if calc is None or name not in getattr(calc, "results", {}):
        return None
    return calc.results[name]


def _finite(value: np.ndarray, path, frame: int, key: str) -> np.ndarray:
    if not np.all(np.isfinite(value)):
        raise DataError.at(path, "contains NaN or inf", frame=frame, key=key)
    return value


def _stress_3x3(value, path, frame: int, key: str) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    if value.size == 6:  # Voigt xx yy zz yz xz xy
        xx, yy, zz, yz, xz, xy = value
        value = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif value.size == 9:
        value = value.reshape(3, 3)
    else:
        raise DataError.at(path, f"expected 6 or 9 numbers, got {value.size}", frame=frame, key=key)
    return _finite(value, path, frame, key)


def _find(atoms: Atoms, name: str, key: Optional[str], per_atom: bool) -> tuple[Optional[str], object]:
    """(key, value) of a label: the given key, or REF_<name> and then <name>; (None, None) if absent."""
    store = atoms.arrays if per_atom else atoms.info
    for candidate in [key] if key else [f"REF_{name}", name]:
        if candidate in store:
            return candidate, store[candidate]
        if candidate == name and name != "virials":
            value = _calc_value(atoms, name)
            if value is not None:
                return candidate, value
    return None, None


def labels_from_atoms(atoms: Atoms, keys: Keys, path, frame: int, require_forces: bool = True) -> Sample:
    """The labels of one frame, validated."""
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)):
        raise DataError.at(path, "contains NaN or inf", frame=frame, key="positions")
    check_distances(atoms, path, frame)
    info = atoms.info
    config_type = str(info.get("config_type", "Default"))
    used: dict[str, str] = {}
    energy_key, energy = _find(atoms, "energy", keys.energy, per_atom=False)
    if energy is None:
        wanted = keys.energy or "REF_energy' or 'energy"
        raise DataError.at(path, "missing energy (set energy_key)", frame=frame, key=wanted)
    used["energy"] = energy_key
    try:
        energy = float(energy)
    except (TypeError, ValueError) as exc:
        raise DataError.at(path, f"not a number ({energy!r})", frame=frame, key=energy_key) from exc
    _finite(np.asarray(energy), path, frame, energy_key)

    forces_key, forces = _find(atoms, "forces", keys.forces, per_atom=True)
    isolated = len(atoms) == 1 and config_type.lower() in ISOLATED_ATOM_TYPES
    if forces is None:
        if require_forces and not isolated:
            wanted = keys.forces or "REF_forces' or 'forces"
            raise DataError.at(path, "missing forces (set forces_key)", frame=frame, key=wanted)
    else:
        used["forces"] = forces_key
        forces = np.asarray(forces, dtype=np.float64)
        if forces.shape != (len(atoms), 3):
            raise DataError.at(path, f"shape {forces.shape}, expected ({len(atoms)}, 3)", frame=frame, key=forces_key)
        _finite(forces, path, frame, forces_key)

    stress_key, stress = _find(atoms, "stress", keys.stress, per_atom=False)
    virials_key, virials = _find(atoms, "virials", keys.virials, per_atom=False)
    if stress is not None:
        used["stress"] = stress_key
        stress = _stress_3x3(stress, path, frame, stress_key)
    elif virials is not None:
        used["stress"] = virials_key
        virials = _stress_3x3(virials, path, frame, virials_key)
        volume = abs(atoms.get_volume()) if atoms.pbc.any() else 0.0
        if volume <= 1e-12:
            raise DataError.at(path, "virials need a periodic cell with a volume", frame=frame, key=virials_key)
        stress = -virials / volume
    weight = float(info.get(keys.weight, 1.0))
    return Sample(atoms, energy, forces, stress, weight, config_type, str(path), frame, label_keys=used)


def check_distances(atoms: Atoms, path, frame: int) -> None:
    """Refuse a frame with two atoms closer than MIN_DISTANCE (a duplicated atom, a broken
    conversion): no potential is defined there, and the model's gradients would be NaN."""
    try:
        check_min_distance(atoms.get_positions(), atoms.get_cell()[:], atoms.get_pbc())
    except ValueError as exc:
        raise DataError.at(path, str(exc), frame=frame, key="positions") from exc


def check_label_keys(samples: Iterator[Sample], path) -> Iterator[Sample]:
    """Pass samples through, refusing a file whose frames take one quantity from different keys
    (e.g. REF_energy in some frames and energy in others: which one is meant cannot be known)."""
    first: dict[str, tuple[str, int]] = {}
    for sample in samples:
        for quantity, key in sample.label_keys.items():
            seen = first.setdefault(quantity, (key, sample.frame))
            if seen[0] != key:
                raise DataError.at(
                    path,
                    f"{quantity} read from '{key}' here but from '{seen[0]}' "
                    f"in frame {seen[1]}; set {quantity}_key to say which",
                    frame=sample.frame,
                    key=key,
                )
        yield sample


def label_summary(samples: list[Sample]) -> str:
    """'energy <- REF_energy, forces <- REF_forces, stress: none' for a list of samples."""
    parts = []
    for quantity in ("energy", "forces", "stress"):
        keys = sorted({s.label_keys[quantity] for s in samples if quantity in s.label_keys})
        parts.append(f"{quantity} <- {', '.join(keys)}" if keys else f"{quantity}: none")
    return ", ".join(parts)


def _read_npz(path: Path) -> list[Sample]:
    """rMD17 (nuclear_charges, coords, energies, forces) or MD22 (z, R, E, F) in kcal/mol."""
    with np.load(path, allow_pickle=False) as data:
        names = set(data.files)
        if {"nuclear_charges", "coords", "energies", "forces"} <= names:
            z, r, e, f = data["nuclear_charges"], data["coords"], data["energies"], data["forces"]
            keys = ("nuclear_charges", "coords", "energies", "forces")
        elif {"z", "R", "E", "F"} <= names:
            z, r, e, f = data["z"], data["R"], data["E"], data["F"]
            keys = ("z", "R", "E", "F")
        else:
            raise DataError.at(path, f"not an rMD17 or MD22 .npz (keys {sorted(names)})")
    e = np.asarray(e, dtype=np.float64).reshape(-1)
    if r.ndim != 3 or r.shape[1:] != (len(z), 3):
        raise DataError.at(path, f"shape {r.shape}, expected (frames, {len(z)}, 3)", key=keys[1])
    if f.shape != r.shape or len(e) != len(r):
        raise DataError.at(path, f"{f.shape} forces and {len(e)} energies for {r.shape} positions", key=keys[3])
    samples = []
    for frame in range(len(r)):
        _finite(r[frame], path, frame, keys[1])
        atoms = Atoms(numbers=z, positions=r[frame])
        check_distances(atoms, path, frame)
        _finite(e[frame : frame + 1], path, frame, keys[2])
        _finite(f[frame], path, frame, keys[3])
        labels = {"energy": keys[2], "forces": keys[3]}
        samples.append(
            Sample(
                atoms,
                float(e[frame]) * KCAL_PER_MOL,
                f[frame] * KCAL_PER_MOL,
                source=str(path),
                frame=frame,
                label_keys=labels,
            )
        )
    return samples


def iter_samples(path, keys: Keys = Keys(), index: str = ":", require_forces: bool = True) -> Iterator[Sample]:
    """The labelled frames of a file one at a time (extxyz and other ASE formats are read lazily,
    so a file larger than memory can be streamed; .npz files are loaded whole).

    Raises:
        DataError: missing file, empty or unreadable file, missing key, NaN/inf, wrong shapes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError.at(path, "no such file")
    if path.suffix == ".npz":
        yield from _read_npz(path)
        return
    yield from check_label_keys(_iter_ase(path, keys, index, require_forces), path)


def _iter_ase(path: Path, keys: Keys, index: str, require_forces: bool) -> Iterator[Sample]:
    if path.stat().st_size == 0:
        raise DataError.at(path, "the file is empty")
    frames = iread(path, index=index)
    frame = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except Exception as exc:
            raise DataError.at(path, f"cannot be read ({type(exc).__name__}: {exc})", frame=frame) from exc
        yield labels_from_atoms(atoms, keys, path, frame, require_forces)
        frame += 1


def read_samples(path, keys: Keys = Keys(), index: str = ":", require_forces: bool = True) -> list[Sample]:
    """All labelled frames of a file (extxyz or any ASE format, ASE .db, rMD17/MD22 .npz).

    Raises:
        DataError: missing file, empty or unreadable file, missing key, NaN/inf, wrong shapes.
    """
    samples = list(iter_samples(path, keys, index, require_forces))
    if not samples:
        raise DataError.at(path, "no structures in the file")
    return samples
