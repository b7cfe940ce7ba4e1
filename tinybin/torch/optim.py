"""tinybin's SGD in PyTorch, and its momentum converted both ways.

    v ← m·v − lr·(g + wd·W);  W ← W + v      (momentum 0.9, not Nesterov; McDonnell et al. 2019 §III)

This is not torch.optim.SGD, whose buffer b ← m·b + g is multiplied by the *current* lr at each
step: under a cosine schedule that changes every batch the two drift apart. Here the velocity is
tinybin's own, so it converts to and from a tinybin checkpoint without loss. Weight decay acts on
conv latent weights only (the 4-d parameters), as tinybin's `Parameter.decay` says.
"""
from __future__ import annotations

import numpy as np
import torch

from .convert import unwrap


class SGD(torch.optim.Optimizer):
    """SGD(params, lr, momentum=0.9, weight_decay=5e-4); `params` as torch's (groups allowed)."""

    def __init__(self, params, lr=0.1, momentum=0.9, weight_decay=5e-4):
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def set_lr(self, lr):
        for group in self.param_groups:
            group["lr"] = float(lr)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + wd * p if wd else p.grad                   # g + wd·W
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                v = state["velocity"]
                v.mul_(momentum).sub_(lr * g)                           # v ← m·v − lr·(g + wd·W)
                p.add_(v)                                               # W ← W + v


def make_sgd(module, lr=0.1, momentum=0.9, weight_decay=5e-4) -> SGD:
    """SGD over `module`'s parameters: weight decay on conv weights, none on BN's g and o."""
    named = list(unwrap(module).named_parameters())
    decay = [p for _, p in named if p.ndim == 4]
    rest = [p for _, p in named if p.ndim != 4]
    groups = [{"params": decay, "weight_decay": weight_decay}] + ([{"params": rest, "weight_decay": 0.0}] if rest else [])
    return SGD(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)


def _param_order(module):
    """Parameters in tinybin's order (= definition order: tinybin's `velocity.i` index)."""
    return list(unwrap(module).named_parameters())


def optimizer_state_from_torch(optimizer: SGD, module) -> dict:
    """tinybin.optim.SGD.state_dict() for `optimizer` (lr, momentum, weight decay, velocities)."""
    decay = next((g["weight_decay"] for g in optimizer.param_groups if g["weight_decay"]), 0.0)
    group = optimizer.param_groups[0]
    state = {"lr": np.float64(group["lr"]), "momentum": np.float64(group["momentum"]),
             "weight_decay": np.float64(decay)}
    for i, (_, p) in enumerate(_param_order(module)):
        v = optimizer.state[p].get("velocity") if p in optimizer.state else None
        a = np.zeros(tuple(p.shape), dtype=str(p.dtype).replace("torch.", "")) if v is None else v.detach().cpu().numpy()
        state[f"velocity.{i}"] = np.ascontiguousarray(np.transpose(a, (2, 3, 1, 0))) if a.ndim == 4 else a.copy()
    return state


def optimizer_state_to_torch(state: dict, optimizer: SGD, module):
    """Load a tinybin SGD state (velocities by parameter position) into `optimizer`."""
    for group in optimizer.param_groups:
        group["lr"], group["momentum"] = float(state["lr"]), float(state["momentum"])
        if group["weight_decay"]:
            group["weight_decay"] = float(state["weight_decay"])
    for i, (name, p) in enumerate(_param_order(module)):
        v = np.asarray(state[f"velocity.{i}"])
        v = np.transpose(v, (3, 2, 0, 1)) if v.ndim == 4 else v
        if tuple(v.shape) != tuple(p.shape):
            raise ValueError(f"velocity {i} ({name}) has shape {v.shape}, the parameter {tuple(p.shape)}")
        optimizer.state[p]["velocity"] = torch.from_numpy(np.array(v, copy=True)).to(device=p.device, dtype=p.dtype)
    return optimizer
