"""Structures in HDF5 shards, read one structure at a time so that a data set larger than memory
can be trained on.

One shard file holds up to a few thousand structures as flat arrays (G structures, A atoms,
E stored edges):

| dataset | shape, dtype | meaning |
|---|---|---|
| atom_ptr | (G+1,) int64 | atoms of structure g are rows atom_ptr[g]:atom_ptr[g+1] |
| numbers | (A,) int16 | atomic numbers |
| positions, forces | (A, 3) float64 | Å, eV/Å (forces zero where has_forces is false) |
| cell | (G, 3, 3) float64 | lattice vectors as rows |
| pbc | (G, 3) bool | |
| energy, weight | (G,) float64 | eV, loss weight |
| stress | (G, 3, 3) float64 | eV/Å³, ASE sign (zero where has_stress is false) |
| has_forces, has_stress | (G,) bool | which labels are real |
| config_type | (G,) int32 | index into the attribute `config_types` |
| edge_ptr, edges, shifts | (G+1,), (E, 2) int32, (E, 3) int8 | optional neighbour lists for `attrs["cutoff"]` |

Writes are atomic (a temporary file renamed into place).
"""

import bisect
from pathlib import Path
from typing import Optional

import h5py
import numpy as np
import torch

from ictp_model.files import atomic_write

from .dataset import StructureInfo
from .graph import AtomicGraph, graph_from_arrays
from .io import DataError, Sample
from .neighbours import neighbour_list

FORMAT = "ictp-graphs"
VERSION = 1


def write_shard(path: Path, samples: list[Sample], neighbour_cutoff: Optional[float] = None) -> None:
    """Write structures to one shard file (atomically)."""
    sizes = np.array([len(s.atoms) for s in samples])
    config_types = sorted({s.config_type for s in samples})
    columns = {
        "atom_ptr": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "numbers": np.concatenate([s.atoms.numbers for s in samples]).astype(np.int16),
        "positions": np.concatenate([s.atoms.positions for s in samples]).astype(np.float64),
        "forces": np.concatenate([s.forces if s.forces is not None else np.zeros((len(s.atoms), 3)) for s in samples]),
        "cell": np.stack([s.atoms.cell[:] for s in samples]).astype(np.float64),
        "pbc": np.stack([s.atoms.pbc for s in samples]).astype(bool),
        "energy": np.array([s.energy for s in samples], dtype=np.float64),
        "weight": np.array([s.weight for s in samples], dtype=np.float64),
        "stress": np.stack([s.stress if s.stress is not None else np.zeros((3, 3)) for s in samples]),
        "has_forces": np.array([s.forces is not None for s in samples]),
        "has_stress": np.array([s.stress is not None for s in samples]),
        "config_type": np.array([config_types.index(s.config_type) for s in samples], dtype=np.int32),
    }
    if neighbour_cutoff is not None:
        pairs = [neighbour_list(s.atoms.positions, s.atoms.cell[:], s.atoms.pbc, neighbour_cutoff) for s in samples]
        columns["edge_ptr"] = np.concatenate([[0], np.cumsum([len(i) for i, _, _ in pairs])]).astype(np.int64)
        columns["edges"] = np.concatenate([np.stack([i, j], 1) for i, j, _ in pairs]).astype(np.int32).reshape(-1, 2)
        columns["shifts"] = np.concatenate([S for _, _, S in pairs]).astype(np.int8).reshape(-1, 3)

    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as handle:
            handle.attrs.update(format=FORMAT, version=VERSION, config_types=config_types)
            if neighbour_cutoff is not None:
                handle.attrs["cutoff"] = float(neighbour_cutoff)
            for name, values in columns.items():
                handle.create_dataset(name, data=values)

    atomic_write(path, write)


def shard_paths(location) -> list[Path]:
    """The shard files of a folder (sorted) or a single .h5 file."""
    location = Path(location)
    paths = sorted(location.glob("*.h5")) if location.is_dir() else [location]
    if not paths or not all(p.is_file() for p in paths):
        raise DataError.at(location, "no HDF5 shards (*.h5) found")
    return paths


class ShardedDataset:
    """Labelled graphs read from HDF5 shards on demand.

    Only a per-structure index (offsets and flags: ~20 bytes a structure) stays in memory; each
    access reads one structure's rows and builds its graph (neighbour lists are searched unless
    the shard stores them for the same cutoff).
    """

    def __init__(self, location, cutoff: float, dtype: torch.dtype = torch.float64) -> None:
        self.paths, self.cutoff, self.dtype = shard_paths(location), float(cutoff), dtype
        self._files: dict[int, h5py.File] = {}
        self._atom_ptr, self._flags, self._types, self._edges = [], [], [], []
        starts = [0]
        for k, path in enumerate(self.paths):
            handle = self._file(k)
            if handle.attrs.get("format") != FORMAT:
                raise DataError.at(path, "not an ictp graph shard", key="format")
            if int(handle.attrs["version"]) > VERSION:
                raise DataError.at(path, f"written by a newer ictp (version {handle.attrs['version']})", key="version")
            self._atom_ptr.append(handle["atom_ptr"][()])
            self._flags.append(np.stack([handle["has_forces"][()], handle["has_stress"][()]], 1))
            self._types.append((handle["config_type"][()], [str(t) for t in handle.attrs["config_types"]]))
            stored = "edge_ptr" in handle and abs(float(handle.attrs.get("cutoff", -1.0)) - self.cutoff) < 1e-12
            self._edges.append(handle["edge_ptr"][()] if stored else None)
            starts.append(starts[-1] + len(self._atom_ptr[-1]) - 1)
        self._starts = starts

    def _file(self, k: int) -> h5py.File:
        if k not in self._files:
            self._files[k] = h5py.File(self.paths[k], "r")
        return self._files[k]

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        k = bisect.bisect_right(self._starts, index) - 1
        return k, index - self._starts[k]

    def __len__(self) -> int:
        return self._starts[-1]

    def info(self, index: int) -> StructureInfo:
        k, g = self._locate(index)
        codes, names = self._types[k]
        has_forces, has_stress = self._flags[k][g]
        return StructureInfo(names[codes[g]], bool(has_forces), bool(has_stress))

    def __getitem__(self, index: int) -> AtomicGraph:
        k, g = self._locate(index)
        f = self._file(k)
        a, b = int(self._atom_ptr[k][g]), int(self._atom_ptr[k][g + 1])
        has_forces, has_stress = self._flags[k][g]
        edges = None
        if self._edges[k] is not None:
            e0, e1 = int(self._edges[k][g]), int(self._edges[k][g + 1])
            pairs = f["edges"][e0:e1].astype(np.int64)
            edges = (pairs[:, 0], pairs[:, 1], f["shifts"][e0:e1].astype(np.int64))
        try:
            return graph_from_arrays(
                f["numbers"][a:b], f["positions"][a:b], f["cell"][g], f["pbc"][g], self.cutoff, self.dtype,
                float(f["energy"][g]), f["forces"][a:b] if has_forces else None, f["stress"][g] if has_stress else None,
                float(f["weight"][g]), labelled=True, edges=edges,
            )  # fmt: skip
        except ValueError as exc:
            raise DataError.at(self.paths[k], str(exc), frame=g, key="positions") from exc
