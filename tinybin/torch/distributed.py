"""torch.distributed pieces: a differentiable all-reduce, process-group set-up, and what a
process learns when another one of its group ends.

Batch norm synchronised across processes needs the per-channel sums of all processes in the
forward pass *and* the matching backward. For y = Σ_r x_r (the same y on every rank r), the
loss of the whole step is Σ_r L_r, and dL/dx_r = Σ_r' dL_r'/dy: the backward is itself an
all-reduce (sum) of the upstream gradients.
"""
from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import torch
import torch.distributed as dist


class AllReduceSum(torch.autograd.Function):
    """y = Σ over processes of x (every process gets y);  dx = Σ over processes of dy."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group = group
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM, group=group)
        return y

    @staticmethod
    def backward(ctx, dy):
        dx = dy.clone()
        dist.all_reduce(dx, op=dist.ReduceOp.SUM, group=ctx.group)
        return dx, None


def all_reduce_sum(x, group):
    """Σ of x over the processes of `group`, differentiable; x itself when group is None."""
    return x if group is None else AllReduceSum.apply(x, group)


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def check_devices(backend: str = "auto", device: str = "auto"):
    """ValueError (one line) for a device or backend this machine does not have, before any
    process group starts."""
    if "cuda" in (backend, device) or backend == "nccl":
        if not torch.cuda.is_available():
            raise ValueError(f"--{'device cuda' if device == 'cuda' else 'backend nccl'} needs CUDA GPUs, and "
                             f"PyTorch finds none; use --device cpu (and --backend gloo under torchrun)")
    if backend == "nccl" and device == "cpu":
        raise ValueError("--backend nccl runs on GPUs: with --device cpu use --backend gloo")


def setup(backend: str = "auto", device: str = "auto"):
    """(rank, world size, device, BN sync group). Under torchrun: initialise the default process
    group (backend "auto": NCCL with CUDA GPUs unless --device cpu, else gloo) and a second group
    for batch norm, so that its all-reduces never interleave with DDP's gradient buckets. Without
    torchrun: one process, no group. device "auto": a CUDA GPU if there is one (one per process)."""
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available() and backend != "gloo")
    if not launched_by_torchrun():
        return 0, 1, torch.device("cuda" if cuda else "cpu"), None
    if backend == "auto":
        backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    bn_group = dist.new_group(backend=backend) if world > 1 else None
    _register(rank)
    return rank, world, torch.device("cuda", local_rank) if cuda else torch.device("cpu"), bn_group


def teardown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ----- when a process of the group ends -----------------------------------------------------------
# torchrun answers a process that dies (killed, out of memory) by sending SIGTERM to the others;
# a process blocked in a collective may instead see the connection drop. Either way each survivor
# looks up which processes ended: every process records its host and pid in torchrun's store.
class Stopped(Exception):
    """This process was told to stop (SIGTERM) because another one of its group ended."""


def stop_on_sigterm(on=True):
    """on: SIGTERM raises Stopped; off: it is ignored (the process has stopped and is on its way
    out, and a Stopped raised while Python exits would end it with a traceback)."""
    def handler(signum, frame):
        raise Stopped("stopped by SIGTERM")
    signal.signal(signal.SIGTERM, handler if on else signal.SIG_IGN)


def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # no store (not under torchrun, or another torch version): nothing to look up
        return None


def _register(rank):
    store = _store()
    if store is not None:
        store.set(f"tinybin/process/{rank}", f"{socket.gethostname()} {os.getpid()}")


def _ended(pid) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a process that has died but is not yet reaped by torchrun is a zombie
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in ("Z", "X")
    except OSError:
        return False


def ended_ranks(world) -> list:
    """The ranks whose process has ended, as far as this host can tell (processes on other hosts
    are not looked at: a node that failed as a whole is named by its own torchrun)."""
    store, here = _store(), socket.gethostname()
    if store is None:
        return []
    ended = []
    for rank in range(world):
        key = f"tinybin/process/{rank}"
        try:
            if not store.check([key]):
                continue
            host, pid = store.get(key).decode().split()
        except Exception:  # the store itself is gone
            return ended
        if host == here and _ended(int(pid)):
            ended.append(rank)
    return ended
