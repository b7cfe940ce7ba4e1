"""torch.distributed pieces: a differentiable all-reduce and process-group set-up.

Batch norm synchronised across processes needs the per-channel sums of all processes in the
forward pass *and* the matching backward. For y = Σ_r x_r (the same y on every rank r), the
loss of the whole step is Σ_r L_r, and dL/dx_r = Σ_r' dL_r'/dy: the backward is itself an
all-reduce (sum) of the upstream gradients.
"""
from __future__ import annotations

import os

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


def setup(backend: str = "auto"):
    """(rank, world size, device, BN sync group). Under torchrun: initialise the default process
    group (backend "auto": NCCL when CUDA is available, else gloo) and a second group for batch
    norm, so that its all-reduces never interleave with DDP's gradient buckets. Without torchrun:
    one process, no group."""
    if not launched_by_torchrun():
        device = torch.device("cuda" if torch.cuda.is_available() and backend != "gloo" else "cpu")
        return 0, 1, device, None
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("--backend nccl needs CUDA GPUs; use --backend gloo on CPUs")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    bn_group = dist.new_group(backend=backend) if world > 1 else None
    return rank, world, device, bn_group


def teardown():
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
