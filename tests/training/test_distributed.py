"""Distributed training: launcher environments, the collectives, and a 2-process gloo run that
reproduces the single-process run (float64, tight tolerance)."""

import csv
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from ase.io import write

from ictp_model.cli.demo import emt_dataset, isolated_atoms
from ictp_model.model.io import load_model
from ictp_model.training import distributed
from ictp_model.training.distributed import Ranks, first_host, launch_environment, part

from .conftest import tiny_values


def test_first_host_of_slurm_node_lists():
    assert first_host("gpu[003-005,9],cpu1") == "gpu003"
    assert first_host("node7") == "node7"
    assert first_host("a-b[12,14]") == "a-b12"


def test_launch_environment_torchrun_slurm_and_none():
    env = launch_environment(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    )
    assert env == {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[02-03]"}
    env = launch_environment({**slurm, "SLURM_JOB_ID": "123"})
    assert env == {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu02", "MASTER_PORT": "20123"}
    with pytest.raises(ValueError, match="torchrun"):
        launch_environment({})


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8])
def test_parts_cover_the_batch_in_order(n):
    items = list(range(n))
    parts = [part(items, Ranks(r, 3)) for r in range(3)]
    assert sum(parts, []) == items
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def _collectives(rank: int, world: int, init_file: str, results) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    ranks = Ranks(rank, world)
    out = {"any": distributed.any_rank(rank == 1, ranks), "none": distributed.any_rank(False, ranks)}
    out["broadcast"] = distributed.broadcast({"rank": rank}, ranks)
    out["gather"] = distributed.gather(rank * 10, ranks)
    a, b, unused = (torch.nn.Parameter(torch.zeros(2, dtype=torch.float64)) for _ in range(3))
    if rank == 0:  # rank 1 has no data: no gradients at all
        a.grad = torch.tensor([1.0, 2.0], dtype=torch.float64)
        b.grad = torch.tensor([3.0, 4.0], dtype=torch.float64)
    distributed.sum_gradients([a, b, unused], ranks)
    out["grads"] = (a.grad.tolist(), b.grad.tolist(), unused.grad)
    results[rank] = out
    torch.distributed.destroy_process_group()


def test_collectives_over_gloo(tmp_path):
    results = mp.Manager().dict()
    mp.spawn(_collectives, args=(2, str(tmp_path / "init"), results), nprocs=2)
    for rank in range(2):
        r = results[rank]
        assert r["any"] is True and r["none"] is False  # one rank's stop stops every rank
        assert r["broadcast"] == {"rank": 0}
        assert r["gather"] == [0, 10]
        assert r["grads"] == ([1.0, 2.0], [3.0, 4.0], None)  # no gradient anywhere stays None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    # 31 + 6 structures: with batches of 5 the last training batch has one structure, so one of
    # the two ranks has nothing to do in that step
    write(folder / "train.xyz", isolated_atoms() + emt_dataset(37, seed=3), format="extxyz")
    config = tiny_values(folder / "train.xyz", batch_size=5, valid_batch_size=4, max_epochs=3, dtype="float64")
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def _ictp(args: list[str], processes: int, cwd) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if processes == 1:
        command = [sys.executable, "-m", "ictp_model.cli.main", *args]
    else:
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
            "--master_port", str(_free_port()), "-m", "ictp_model.cli.main", *args, "--distributed",
        ]  # fmt: skip
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "terminate called" not in result.stderr, result.stderr[-3000:]


def _log(folder) -> np.ndarray:
    with open(folder / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    keys = ["train_loss", "valid_loss", "valid_energy_rmse", "valid_forces_rmse", "lr"]
    return np.array([[float(row[k]) for k in keys] for row in rows])


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_two_processes_reproduce_one(data, tmp_path, reduction):
    args = ["train", str(data / "config.yaml"), "--loss.reduction", reduction]
    _ictp([*args, "--output_dir", str(tmp_path / "one")], 1, data)
    _ictp([*args, "--output_dir", str(tmp_path / "two")], 2, data)
    one, two = _log(tmp_path / "one"), _log(tmp_path / "two")
    assert one.shape == two.shape == (3, 5)
    assert one[-1, 1] < one[0, 1]  # it trains
    np.testing.assert_allclose(two, one, rtol=1e-9, atol=0)
    a, b = load_model(tmp_path / "one" / "model.pt"), load_model(tmp_path / "two" / "model.pt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, rtol=1e-9, atol=1e-12), name
    assert not (tmp_path / "two" / "rank1").exists() and sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


def test_two_processes_stream_shards_like_one(data, tmp_path):
    _ictp(["preprocess", str(data / "config.yaml"), "--out", str(tmp_path / "shards"), "--shard-size", "7",
           "--valid_size", "null", "--valid_fraction", "0.2"], 1, data)  # fmt: skip
    args = ["train", str(data / "config.yaml"), "--train_file", str(tmp_path / "shards"), "--valid_size", "null"]
    _ictp([*args, "--output_dir", str(tmp_path / "one")], 1, data)
    _ictp([*args, "--output_dir", str(tmp_path / "two")], 2, data)
    np.testing.assert_allclose(_log(tmp_path / "two"), _log(tmp_path / "one"), rtol=1e-9, atol=0)
