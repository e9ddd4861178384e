"""HDF5 shards and `ictp preprocess`: round trips, streamed statistics, atomic output, bad input,
and memory that does not grow with the number of shards."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import write

from ictp_model.cli.demo import emt_dataset, isolated_atoms
from ictp_model.cli.main import main
from ictp_model.data.graph import graph_from_atoms
from ictp_model.data.io import DataError, Keys, read_samples
from ictp_model.data.preprocess import preprocess, read_statistics
from ictp_model.data.shards import ShardedDataset, write_shard
from ictp_model.data.statistics import e0s_least_squares, force_rms

KEYS = Keys("REF_energy", "REF_forces", "REF_stress")


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    path = tmp_path_factory.mktemp("shards") / "train.xyz"
    frames = emt_dataset(12, seed=5)
    for atoms in frames[::3]:  # some structures without stress or forces, another config_type
        atoms.info.pop("REF_stress")
        atoms.info["config_type"] = "no_stress"
    del frames[1].arrays["REF_forces"]
    write(path, frames, format="extxyz")
    return read_samples(path, KEYS, require_forces=False)


@pytest.mark.parametrize("stored", [False, True])
def test_shards_return_the_graphs_of_the_samples(tmp_path, samples, stored):
    write_shard(tmp_path / "a.h5", samples[:5], 3.5 if stored else None)
    write_shard(tmp_path / "b.h5", samples[5:], 3.5 if stored else None)
    dataset = ShardedDataset(tmp_path, 3.5, torch.float64)
    assert len(dataset) == len(samples)
    for index, s in enumerate(samples):
        ref = graph_from_atoms(s.atoms, 3.5, torch.float64, s.energy, s.forces, s.stress, s.weight, labelled=True)
        got = dataset[index]
        for name, a, b in zip(ref._fields, ref, got):
            if isinstance(a, torch.Tensor):
                assert torch.equal(a, b), name
            else:
                assert a == b, name
        assert dataset.info(index) == (s.config_type, s.forces is not None, s.stress is not None)


def test_preprocess_streams_the_statistics_of_an_in_memory_run(tmp_path, monkeypatch):
    frames = isolated_atoms() + emt_dataset(30, seed=7)
    write(tmp_path / "train.xyz", frames, format="extxyz")
    write(tmp_path / "test.xyz", emt_dataset(4, seed=8), format="extxyz")
    config = textwrap.dedent("""
        train_file: train.xyz
        test_file: test.xyz
        valid_fraction: 0.25
        energy_key: REF_energy
        forces_key: REF_forces
        stress_key: REF_stress
        E0s: average
        model: {preset: small, cutoff: 3.5}
    """)
    (tmp_path / "config.yaml").write_text(config)
    args = ["preprocess", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "out"), "--shard-size", "4"]
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    # an existing output is never overwritten
    before = sorted(p.name for p in (tmp_path / "out").rglob("*"))
    assert main(args) == 2
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == before
    stats = read_statistics(tmp_path / "out")
    train = ShardedDataset(tmp_path / "out" / "train", 3.5)
    counts = stats["counts"]
    assert counts["train"] + counts["valid"] == 30 and counts["test"] == 4 and counts["valid"] > 0
    assert stats["shards"]["train"] == -(-counts["train"] // 4)
    # the streamed statistics equal those of the training structures held in memory
    all_samples = read_samples(tmp_path / "train.xyz", KEYS)[2:]  # without the two isolated atoms
    energies = {round(s.energy, 10): s for s in all_samples}
    train_samples = [energies[round(float(train[i].energy), 10)] for i in range(len(train))]
    expected = e0s_least_squares(train_samples, ["Cu", "Au"])
    assert stats["atomic_energies"] == pytest.approx(expected, rel=1e-9)
    assert stats["scale"] == pytest.approx(force_rms(train_samples), rel=1e-12)
    edges = sum(train[i].num_edges for i in range(len(train)))
    atoms = sum(train[i].num_nodes for i in range(len(train)))
    assert stats["avg_num_neighbors"] == pytest.approx(edges / atoms, rel=1e-12)


def test_bad_frame_names_file_frame_and_key_and_leaves_nothing(tmp_path):
    frames = emt_dataset(6, seed=1)
    frames[4].arrays["REF_forces"][0, 0] = np.nan
    write(tmp_path / "bad.xyz", frames, format="extxyz")
    config = {"train_file": str(tmp_path / "bad.xyz"), "energy_key": "REF_energy", "forces_key": "REF_forces"}
    (tmp_path / "c.yaml").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"bad.xyz: frame 4: key 'REF_forces': contains NaN"):
        preprocess({"train": config["train_file"]}, KEYS, tmp_path / "out", 3.5, lambda *a: {}, shard_size=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.xyz", "c.yaml"]
    assert main(["preprocess", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "out")]) == 2


def test_foreign_h5_is_refused(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle.create_dataset("foo", data=[1])
    with pytest.raises(DataError, match="x.h5: frame -: key 'format': not an ictp graph shard"):
        ShardedDataset(tmp_path, 3.0)


STREAM = """
import resource, sys
from ictp_model.data.graph import collate
from ictp_model.data.shards import ShardedDataset
from ictp_model.training.loop import epoch_batches
dataset = ShardedDataset(sys.argv[1], 5.0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
edges = 0
for indices in epoch_batches(len(dataset), 4, shuffle=True, seed=0):
    edges += collate([dataset[i] for i in indices]).num_edges
print(edges, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_streaming_memory_does_not_grow_with_the_number_of_shards(tmp_path):
    """One epoch of batches over 2 and over 20 shards: the peak RSS grows by the same small amount
    although the graphs of the 20 shards would take > 400 MB in memory."""
    cell = bulk("Cu", "fcc", a=3.6, cubic=True) * (5, 5, 5)  # 500 atoms, ~42 neighbours each at 5 Å
    rng = np.random.default_rng(0)
    shard = []
    for k in range(25):
        atoms = cell.copy()
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        atoms.info["REF_energy"], atoms.arrays["REF_forces"] = float(k), np.zeros((len(atoms), 3))
        shard.append(atoms)
    write(tmp_path / "s.xyz", shard, format="extxyz")
    samples = read_samples(tmp_path / "s.xyz", KEYS)
    for n in (2, 20):
        (tmp_path / str(n)).mkdir()
        for k in range(n):
            write_shard(tmp_path / str(n) / f"shard_{k:03d}.h5", samples)
    grown = {}
    for n in (2, 20):
        out = subprocess.run([sys.executable, "-c", STREAM, str(tmp_path / str(n))], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        edges, grown[n] = map(int, out.stdout.split())
        in_memory_mb = edges * (2 * 8 + 3 * 8) / 2**20  # edge_index + shifts of the graphs alone
    assert in_memory_mb > 300
    print(f"peak RSS growth while streaming: {grown} kB; graphs of the larger set {in_memory_mb:.0f} MB")
    assert grown[20] < grown[2] + 30 * 1024, grown  # kB: within 30 MB of the 10× smaller set
