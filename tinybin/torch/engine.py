"""PyTorch as a tinybin engine: the same run (tinybin.train.run), another model, step and device.

The run hands over tinybin's model and SGD (the seed's initial weights, or a checkpoint's);
this engine trains their PyTorch copy on `device`, alone or data-parallel over `world`
processes, and gives tinybin's model and SGD back whenever the run saves a checkpoint.

Data-parallel: --batch-size is the *global* batch. Every process builds the same augmented batch
(tinybin.data.Batches, seeded by seed, epoch and batch index) and takes its 1/N share; batch
norm uses the statistics of the whole batch (all-reduced sums, in forward and backward) and DDP
averages the gradients, so one step on N processes is one tinybin step on the global batch.
"""
from __future__ import annotations

import inspect
import os

import numpy as np
import torch
import torch.nn.functional as TF
from torch.nn.parallel import DistributedDataParallel

from ..train.divergence import same_output
from ..train.engine import Engine
from .checkpoint import to_tinybin
from .convert import synchronise_batch_norm, to_torch
from .optim import make_sgd, optimizer_state_to_torch


def no_buffer_sync():
    """DDP's keyword for "do not broadcast buffers every forward" (renamed in torch 2.13)."""
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def share(xb, yb, rank, world, device):
    """This process's slice of the global batch (shares differ by at most one image), on its device."""
    bounds = np.linspace(0, len(xb), world + 1).round().astype(int)
    part = slice(bounds[rank], bounds[rank + 1])
    return (torch.from_numpy(xb[part]).to(device, non_blocking=True),
            torch.from_numpy(yb[part]).to(device, non_blocking=True))


def global_sum(values, device, world):
    """Σ over the processes of each number in `values` (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        torch.distributed.all_reduce(t)
    return t.tolist()


class TorchEngine(Engine):
    """tinybin's WRN trained in PyTorch on `device`, one process of `world` (rank: this one's);
    bn_group: the process group batch norm all-reduces in (tinybin.torch.distributed.setup)."""

    name = "tinybin.torch"

    def __init__(self, device, rank=0, world=1, bn_group=None, dtype=torch.float32, channels_last=False):
        self.device, self.rank, self.world, self.bn_group = torch.device(device), rank, world, bn_group
        self.dtype, self.channels_last = dtype, channels_last

    def describe(self):
        return f"; PyTorch, {self.world} process{'es' if self.world > 1 else ''}, {self.device}"

    def compile_ahead(self):
        pass  # PyTorch's steps use none of tinybin's kernels

    def load_data(self, cfg):
        """The run's data, read (or downloaded) first by one process per node while the others
        wait; an error in any process ends them all (the one that failed says why)."""
        first = int(os.environ.get("LOCAL_RANK", "0")) == 0
        data = None
        for turn in (True, False):
            error = None
            if first == turn:
                try:
                    data = super().load_data(cfg)
                except Exception as e:  # every process must reach the check below, then it is raised
                    error = e
            failed = global_sum([error is not None], self.device, self.world)[0]
            if error is not None:
                raise error
            if failed:
                raise ValueError("the data could not be loaded in another process (its error is above)")
        return data

    def start(self, model, optimizer):
        net = to_torch(model).to(self.device, self.dtype)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        synchronise_batch_norm(net, self.bn_group)
        self.net = net
        # BN buffers stay equal on every process (synchronised statistics): no per-step broadcast
        self.model = DistributedDataParallel(net, **no_buffer_sync()) if self.world > 1 else net
        self.optimizer = make_sgd(net, optimizer.lr, optimizer.momentum, optimizer.weight_decay)
        optimizer_state_to_torch(optimizer.state_dict(), self.optimizer, net)

    def fit(self, batches, schedule, steps, hooks, start):
        """`tinybin.train.fit` in PyTorch: this process's share of each global batch; records
        (and hooks' end_step) see the loss, accuracy and same_output of the global batch."""
        backward = [h.after_backward for h in hooks if hasattr(h, "after_backward")]
        stepped = [h.after_step for h in hooks if hasattr(h, "after_step")]
        ended = [h.end_step for h in hooks if hasattr(h, "end_step")]
        history = []
        self.model.train()
        for step, (xb, yb) in zip(range(start, start + steps), batches):
            lr = schedule(step)
            x, y = share(xb, yb, self.rank, self.world, self.device)
            self.optimizer.set_lr(lr)
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.model(x)
            # summed over this share, divided by the mean share: DDP's average over processes then
            # is the gradient of the mean loss over the global batch, even for unequal shares
            loss = TF.cross_entropy(logits, y, reduction="sum") * (self.world / len(xb))
            loss.backward()
            for hook in backward:
                hook(self.net, logits, loss, y)
            self.optimizer.step()
            for hook in stepped:
                hook(self.net)
            same = same_output(logits.detach().cpu().numpy())
            local = [float(loss.detach()) * len(xb) / self.world, int((logits.argmax(1) == y).sum()), len(y), int(same)]
            total_loss, correct, n, same_shares = global_sum(local, self.device, self.world)  # the global batch
            record = {"step": step, "lr": lr, "loss": total_loss / n, "acc": correct / n, "images": int(n),
                      "same_output": same_shares == self.world}
            history.append(record)
            for hook in ended:
                hook(record)
        return history

    @torch.no_grad()
    def evaluate(self, x, y, batch_size=500):
        """(mean loss, accuracy) in eval mode, single centre view; the mode is restored."""
        was_training, loss, correct = self.net.training, 0.0, 0
        self.net.eval()
        for i in range(0, len(x), batch_size):
            logits = self.net(torch.from_numpy(np.asarray(x[i:i + batch_size])).to(self.device))
            yb = torch.from_numpy(np.asarray(y[i:i + batch_size], np.int64)).to(self.device)
            loss += float(TF.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
        self.net.train(was_training)
        return loss / max(len(x), 1), correct / max(len(x), 1)

    def bn_layers(self):
        return [bn for _, bn in self.net.batch_norms() if not bn.frozen]

    def set_bn_stats(self, which):
        for bn in self.bn_layers():
            bn.inference_stats = which

    @torch.no_grad()
    def recalibrate(self, batches):
        """Every process runs its share of each batch: the statistics are the global batch's."""
        bns, was_training = self.bn_layers(), self.net.training
        self.net.train()
        for bn in bns:
            bn.start_recalibration()
        n = 0
        for xb, yb in batches:
            self.net(share(xb, yb, self.rank, self.world, self.device)[0])
            n += 1
        for bn in bns:
            bn.finish_recalibration()
        self.net.train(was_training)
        return n

    def tinybin_state(self):
        return to_tinybin(self.net, self.optimizer)
