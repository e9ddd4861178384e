"""`ictp preprocess`: stream labelled files into HDF5 shards plus a statistics sidecar, in bounded
memory, so that `ictp train` can train on data sets larger than memory.

Layout of the output folder::

    OUT/statistics.json     elements, E0s, average neighbour count, force RMS, cutoff, counts
    OUT/train/shard_00000.h5 ...
    OUT/valid/shard_00000.h5 ...
    OUT/test/shard_00000.h5 ...   (when a test file is given)

The folder is written under a temporary name and renamed when complete, so an interrupted run
leaves no half-written data set behind.
"""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
from ase.data import chemical_symbols

from .io import DataError, Keys, Sample, iter_samples
from .neighbours import neighbour_list
from .shards import write_shard
from .statistics import RunningStatistics

STATISTICS_FILE = "statistics.json"


class ShardWriter:
    """Buffers up to ``shard_size`` structures, then writes them as the next shard file."""

    def __init__(self, folder: Path, shard_size: int, neighbour_cutoff: Optional[float]) -> None:
        self.folder, self.shard_size, self.neighbour_cutoff = folder, shard_size, neighbour_cutoff
        self.buffer: list[Sample] = []
        self.shards, self.count = 0, 0
        self.elements: set[int] = set()

    def add(self, sample: Sample) -> None:
        self.buffer.append(sample)
        self.elements.update(int(z) for z in sample.atoms.numbers)
        self.count += 1
        if len(self.buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_shard(self.folder / f"shard_{self.shards:05d}.h5", self.buffer, self.neighbour_cutoff)
        self.shards += 1
        self.buffer = []


def preprocess(
    files: dict[str, Optional[str]],
    keys: Keys,
    out: Path,
    cutoff: float,
    e0s: "Callable[[RunningStatistics, list[Sample], list[str]], dict[str, float]]",
    valid_fraction: float = 0.1,
    train_size: Optional[int] = None,
    seed: int = 0,
    shard_size: int = 1000,
    store_neighbours: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Stream files {"train": path, "valid": path or None, "test": path or None} into shards.

    Without a valid file, each training frame goes to validation with probability
    valid_fraction (seeded). Isolated atoms (config_type=IsolatedAtom) are kept aside for E0s;
    e0s(statistics, isolated, elements) resolves the E0s. Returns the statistics written to the
    sidecar.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError.at(out, "the output folder exists and is not empty; nothing was changed")
    partial = out.with_name(f".{out.name}.partial{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    neighbour_cutoff = cutoff if store_neighbours else None
    writers = {name: ShardWriter(partial / name, shard_size, neighbour_cutoff) for name in ("train", "valid", "test")}
    stats, isolated = RunningStatistics(), []
    rng = np.random.default_rng(seed)
    try:
        _stream_training_file(files, keys, writers, stats, isolated, rng, valid_fraction, train_size, cutoff)
        for name in ("valid", "test"):
            if files.get(name):
                for sample in iter_samples(files[name], keys):
                    writers[name].add(sample)
        for writer in writers.values():
            writer.flush()
        if writers["train"].count == 0 or writers["valid"].count == 0:
            raise DataError.at(
                files["train"],
                f"{writers['train'].count} training and "
                f"{writers['valid'].count} validation structures; both sets need at least one",
            )
        statistics = _statistics(files, writers, stats, isolated, e0s, cutoff, store_neighbours)
        (partial / STATISTICS_FILE).write_text(json.dumps(statistics, indent=1))
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    log(f"wrote {out}: " + ", ".join(f"{n} {w.count} structures in {w.shards} shards" for n, w in writers.items()))
    return statistics


def _stream_training_file(files, keys, writers, stats, isolated, rng, valid_fraction, train_size, cutoff) -> None:
    """The training file, frame by frame: isolated atoms aside (for E0s), a seeded valid_fraction
    to validation when there is no valid file, the rest (up to train_size) to training, with its
    statistics."""
    for sample in iter_samples(files["train"], keys):
        if sample.is_isolated_atom:
            isolated.append(sample)
            continue
        if files.get("valid") is None and rng.random() < valid_fraction:
            writers["valid"].add(sample)
        elif train_size is None or writers["train"].count < train_size:
            i, _, _ = neighbour_list(sample.atoms.positions, sample.atoms.cell[:], sample.atoms.pbc, cutoff)
            stats.add(sample, len(i))
            writers["train"].add(sample)


def _statistics(files, writers, stats, isolated, e0s, cutoff: float, store_neighbours: bool) -> dict:
    """The sidecar: elements, E0s, n̄, force scale, counts and shards of every set."""
    numbers = sorted(set().union(*(w.elements for w in writers.values())))
    elements = [chemical_symbols[z] for z in numbers]
    return {
        "format": "ictp-shards",
        "version": 1,
        "cutoff": cutoff,
        "elements": elements,
        "atomic_energies": e0s(stats, isolated, elements),
        "avg_num_neighbors": stats.avg_num_neighbors(),
        "scale": stats.force_rms(),
        "counts": {name: w.count for name, w in writers.items()},
        "shards": {name: w.shards for name, w in writers.items()},
        "sources": {name: str(path) for name, path in files.items() if path},
        "neighbours_stored": store_neighbours,
    }


def read_statistics(folder: Path) -> dict:
    """The sidecar of a preprocessed folder."""
    path = Path(folder) / STATISTICS_FILE
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError.at(path, f"cannot read the statistics sidecar ({exc})") from exc
    if values.get("format") != "ictp-shards":
        raise DataError.at(path, "not written by ictp preprocess", key="format")
    return values


def is_preprocessed(location) -> bool:
    return location is not None and (Path(location) / STATISTICS_FILE).is_file()
