"""Data-parallel training over processes and nodes with torch.distributed.

Launch with `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) or SLURM's `srun`
(SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODELIST are mapped here). NCCL on GPUs, gloo
on CPUs.

Every rank holds the same model; each step, every rank computes the loss of its part of the
global batch and the gradients are summed with one all_reduce (the operation DDP performs). We do
it explicitly rather than wrap the model in DistributedDataParallel because the last batch of an
epoch may leave a rank with no structures (DDP requires a forward on every rank) and because the
loss normalisation must use global counts to reproduce a single-process run exactly.
"""

import datetime
import os
import re
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Ranks()


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: 'gpu[003-005,9],cpu1' -> 'gpu003'."""
    head = re.match(r"([^,\[]+)(\[([^\]]+)\])?", nodelist.strip())
    if head is None:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = head.group(1), head.group(3)
    if ranges is None:
        return prefix
    return prefix + ranges.split(",")[0].split("-")[0]


def launch_environment(environ: Optional[dict] = None) -> dict[str, str]:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT from torchrun's variables, or from
    SLURM's when `srun` started the processes."""
    env = dict(os.environ if environ is None else environ)
    if "RANK" in env and "WORLD_SIZE" in env:
        out = {k: env[k] for k in ("RANK", "WORLD_SIZE") if k in env}
        out["LOCAL_RANK"] = env.get("LOCAL_RANK", "0")
    elif "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        out = {
            "RANK": env["SLURM_PROCID"],
            "WORLD_SIZE": env["SLURM_NTASKS"],
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        }
    else:
        raise ValueError(
            "--distributed needs a launcher: start with 'torchrun --nproc_per_node N ictp train ...' "
            "or with 'srun ictp train ...' inside a SLURM allocation"
        )
    nodelist = env.get("SLURM_JOB_NODELIST", env.get("SLURM_NODELIST", ""))
    out["MASTER_ADDR"] = env.get("MASTER_ADDR") or (first_host(nodelist) if nodelist else "127.0.0.1")
    # a port per SLURM job so that two jobs sharing a node do not collide
    default_port = str(20000 + int(env["SLURM_JOB_ID"]) % 20000) if "SLURM_JOB_ID" in env else "29500"
    out["MASTER_PORT"] = env.get("MASTER_PORT", default_port)
    return out


def init(device: str) -> tuple[Ranks, str]:
    """Join the process group; returns this process's ranks and the device it should use
    ('cuda' becomes 'cuda:LOCAL_RANK')."""
    env = launch_environment()
    os.environ.update(env)
    ranks = Ranks(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"]))
    cuda = device.startswith("cuda")
    if cuda:
        # modulo: under srun --gpus-per-task=1 each process sees one GPU, as cuda:0
        device = f"cuda:{ranks.local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # NCCL's default is 10 minutes; a cold compile (compile: true) or rank 0's plots can take longer
        timeout = datetime.timedelta(minutes=60)
        dist.init_process_group(backend="nccl" if cuda else "gloo", init_method="env://", timeout=timeout)
    return ranks, device


def shutdown(completed: bool) -> None:
    """Leave the process group: after a completed run, every rank first waits for the others
    (no rank tears its connections down while a peer still works, e.g. rank 0 writing plots),
    then the group is destroyed."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if completed:
        dist.barrier()
    dist.destroy_process_group()


def exit_process(code: int) -> None:
    """End a distributed worker without interpreter finalisation.

    In a training process destroy_process_group() leaves the gloo backend's threads running
    (observed with gdb and /proc: gloo_tcp_loop and two pt_gloo_runloop threads after it returns,
    with no Python object left that holds the group), so the backend is torn down only during
    interpreter finalisation, together with the static destructors of the other native libraries
    (a minimal gloo script frees it, a training process does not; I did not find the C++ owner).
    About one exit in ten of a 2-process run then aborted with
    std::terminate ("terminate called without an active exception", SIGABRT) after the run had
    completed, and torchrun reported the job as failed. Every output is written (atomically) and
    the group is left before this is called, so skipping that teardown loses nothing.
    """
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _comm_device() -> torch.device:
    # NCCL only moves CUDA tensors; small CPU-side values go through the current GPU
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Sum over ranks, in place (identity when not distributed)."""
    if ranks.distributed:
        moved = tensor.to(_comm_device())
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        tensor.copy_(moved)
    return tensor


def barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        dist.barrier()


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """A collective decision: true on every rank when it is true on one (stops that would
    otherwise leave the other ranks waiting in the next collective)."""
    if not ranks.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def broadcast(obj: Any, ranks: Ranks) -> Any:
    """Rank 0's object on every rank (pickled; for statistics and small state)."""
    if not ranks.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, ranks: Ranks) -> list:
    """Every rank's object, in rank order, on every rank."""
    if not ranks.distributed:
        return [obj]
    out: list = [None] * ranks.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_gradients(parameters: list[torch.nn.Parameter], ranks: Ranks) -> None:
    """Sum the gradients over ranks with one flat all_reduce. A rank without data (no gradient)
    contributes zeros; a parameter without a gradient on every rank keeps none, as it would in a
    single process (Adam skips it)."""
    if not ranks.distributed:
        return
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in parameters]
    present = torch.tensor([p.grad is not None for p in parameters], dtype=grads[0].dtype, device=grads[0].device)
    flat = torch.cat(grads + [present])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, seen in zip(parameters, flat[-len(parameters) :].tolist()):
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone() if seen > 0 else None
        offset += n


def broadcast_parameters(module: torch.nn.Module, ranks: Ranks) -> None:
    """Start every rank from rank 0's weights and buffers."""
    if not ranks.distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def part(items: list, ranks: Ranks) -> list:
    """This rank's contiguous part of a list (sizes differ by at most one; may be empty)."""
    n, r, w = len(items), ranks.rank, ranks.world_size
    start = r * (n // w) + min(r, n % w)
    return items[start : start + n // w + (1 if r < n % w else 0)]
