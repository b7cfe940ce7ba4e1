"""tinybin's run folder, read and written from PyTorch.

A run trained here leaves what `python -m tinybin train` leaves — checkpoint.npz (model,
optimizer and meta with the run's config), metrics.jsonl, steps.jsonl, curves.png — so
`python -m tinybin evaluate RUNDIR`, `export`, `tinybin.train.load_checkpoint` and the probes
take it as they take a tinybin run.
"""
from __future__ import annotations

from ..optim import SGD as TinybinSGD
from ..train import load_checkpoint, read_checkpoint, save_checkpoint
from .convert import from_torch, to_torch
from .optim import optimizer_state_from_torch, optimizer_state_to_torch

__all__ = ["load_optimizer_state", "load_tinybin_checkpoint", "save_tinybin_checkpoint", "to_tinybin"]


def to_tinybin(module, optimizer):
    """(tinybin WRN, tinybin SGD) holding what `module` (made by to_torch, or DDP around it) and
    `optimizer` (tinybin.torch.SGD) hold: weights, BN statistics, velocities, lr."""
    model = from_torch(module)
    sgd = TinybinSGD(model.parameters())
    sgd.load_state_dict(optimizer_state_from_torch(optimizer, module))
    return model, sgd


def save_tinybin_checkpoint(path, module, optimizer, meta: dict):
    """Write `module` and `optimizer` (see to_tinybin) as a tinybin checkpoint, atomically.
    meta needs at least config, arch, num_classes, epoch."""
    save_checkpoint(path, *to_tinybin(module, optimizer), meta)


def load_tinybin_checkpoint(path):
    """(torch module in eval mode with the run's BN statistics, meta) from a tinybin checkpoint
    (file or run folder) — one trained by tinybin or by tinybin.torch."""
    model, meta = load_checkpoint(path)
    return to_torch(model), meta


def load_optimizer_state(path, optimizer, module):
    """Put a checkpoint's SGD velocities (and lr, momentum, weight decay) into `optimizer`."""
    _, optim_state, _ = read_checkpoint(path)
    return optimizer_state_to_torch(optim_state, optimizer, module)
