"""SGD with momentum and weight decay in the papers' form, and the learning-rate schedules.

SGD of P1 and P2:  v ← m·v − lr·(g + wd·W);  W ← W + v   (momentum 0.9, not Nesterov)

Weight decay acts on conv latent weights only: a Parameter's `decay` flag says whether it
applies (nn.Conv2d sets True, nn.BatchNorm2d's g and o False). The learning rate is passed to
`step(lr)` (or set as `opt.lr`), so a schedule is just a function of the step number.
"""
from __future__ import annotations

import math

import numpy as np


class SGD:
    """SGD(params, lr, momentum=0.9, weight_decay=5e-4).

    params: Parameters (each with .data, .grad and a .decay flag), in a fixed order — the
    velocities are matched to them by position in state_dict().
    """

    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD got no parameters")
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.velocity = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self, lr: float | None = None):
        """One update with the current gradients (parameters without a gradient are skipped)."""
        if lr is not None:
            self.lr = float(lr)
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad
            if self.weight_decay and getattr(p, "decay", True):
                g = g + self.weight_decay * p.data          # g + wd·W  (a new array: grad untouched)
            v = self.velocity[i]
            if v is None or v.shape != p.data.shape or v.dtype != p.data.dtype:
                v = self.velocity[i] = np.zeros_like(p.data)
            v *= self.momentum                              # v ← m·v − lr·(g + wd·W)
            v -= (self.lr * g).astype(v.dtype, copy=False)
            p.data += v                                     # W ← W + v  (in place: no copy of W)

    def state_dict(self) -> dict:
        """lr, momentum, weight decay and velocities (zeros where none yet) as numpy arrays."""
        return {"lr": np.float64(self.lr), "momentum": np.float64(self.momentum),
                "weight_decay": np.float64(self.weight_decay),
                **{f"velocity.{i}": (v if v is not None else np.zeros_like(p.data))
                   for i, (p, v) in enumerate(zip(self.params, self.velocity))}}

    def load_state_dict(self, state):
        self.lr, self.momentum = float(state["lr"]), float(state["momentum"])
        self.weight_decay = float(state["weight_decay"])
        for i, p in enumerate(self.params):
            v = np.asarray(state[f"velocity.{i}"])
            if v.shape != p.data.shape:
                raise ValueError(f"velocity {i} has shape {v.shape}, parameter {p.data.shape}")
            self.velocity[i] = v.astype(p.data.dtype, copy=True)
        return self


def cosine_lr(step: int, total_steps: int, lr_max: float = 0.1, lr_min: float = 1e-5) -> float:
    """lr_min + ½(lr_max − lr_min)(1 + cos(π·step/total_steps)): lr_max at step 0, lr_min at the end.

    P2's schedule, updated every batch over the whole run.
    """
    t = min(max(step, 0), total_steps) / max(total_steps, 1)
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * t))


def warm_restart_lr(step: int, steps_per_epoch: int, lr_max: float = 0.1, lr_min: float = 1e-5,
                    first_cycle: int = 2, factor: int = 2) -> float:
    """Cosine with warm restarts (SGDR, P1): cycles of 2, 4, 8, ... epochs, each a full cosine
    from lr_max to lr_min, then back to lr_max.

    A run of 2+4+...+2^j epochs ends at the end of a cycle (P1: 254 epochs = 2+...+128).
    """
    start, length = 0, first_cycle * steps_per_epoch
    while step >= start + length:
        start += length
        length *= factor
    return cosine_lr(step - start, length, lr_max, lr_min)


class Schedule:
    """The learning rate as a function of the global step: 'cosine' (P2) or 'restarts' (P1)."""

    def __init__(self, kind: str, total_steps: int, steps_per_epoch: int, lr_max: float = 0.1,
                 lr_min: float = 1e-5):
        if kind not in ("cosine", "restarts", "constant"):
            raise ValueError(f"unknown schedule {kind!r}; valid: cosine, restarts, constant")
        self.kind, self.total_steps, self.steps_per_epoch = kind, total_steps, steps_per_epoch
        self.lr_max, self.lr_min = lr_max, lr_min

    def __call__(self, step: int) -> float:
        if self.kind == "cosine":
            return cosine_lr(step, self.total_steps, self.lr_max, self.lr_min)
        if self.kind == "restarts":
            return warm_restart_lr(step, self.steps_per_epoch, self.lr_max, self.lr_min)
        return self.lr_max
