"""When a run has failed: one definition each of "exploded" and "dead".

A BN-free net at lr 0.1 can reach losses of 1e10–1e17 within a few steps without ever producing
NaN, and then sit at chance with every unit at its floor. So:

    exploded   the loss is non-finite, or above factor × max(first loss, ln C)
    dead       every image of the batch gets the same logits: the output no longer depends on
               the input (in a BN-free net every unit is at its floor); a run is dead when that
               has held for `window` consecutive steps
"""
from __future__ import annotations

import math

import numpy as np


class Diverged(RuntimeError):
    """Raised by `tinybin.train.train` when the loss explodes or the net dies."""

    def __init__(self, step, loss, reason, out=None):
        self.step, self.loss, self.reason, self.out = step, loss, reason, out
        super().__init__(f"diverged at step {step} (loss={loss:.4g}{'' if reason == 'exploded' else ', ' + reason})")


def exploded(loss, first_loss, num_classes, factor=100.0):
    """None, "non-finite" or "exploded" (loss > factor·max(first loss, ln C))."""
    if not math.isfinite(loss):
        return "non-finite"
    return "exploded" if loss > factor * max(first_loss, math.log(num_classes)) else None


def same_output(logits) -> bool:
    """True when every image of the batch got the same logits (to 1e-6 of their size)."""
    a = np.asarray(getattr(logits, "data", logits))
    return bool(np.all(np.ptp(a, axis=0) <= 1e-6 * (1.0 + np.abs(a).max())))


class DivergenceDetector:
    """Watches a run step by step; `check` says why it failed, or None.

    As a `fit` hook it reads each step's record (loss, same_output); the first failure is kept
    in `failure`, and with stop=True raised as Diverged.
    """

    def __init__(self, num_classes, factor=100.0, window=50, first_loss=None, stop=False, out=None):
        self.num_classes, self.factor, self.window = num_classes, factor, window
        self.first_loss, self.stop, self.out = first_loss, stop, out
        self.dead_steps = 0
        self.failure = None                              # the first Diverged, if any

    def check(self, loss, same) -> str | None:
        """None if healthy, else the reason; `same`: this batch's logits were the same for every image."""
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = loss
        reason = exploded(loss, self.first_loss if self.first_loss is not None else loss, self.num_classes,
                          self.factor)
        self.dead_steps = self.dead_steps + 1 if same else 0
        if reason is None and self.dead_steps >= self.window:
            reason = "dead: the same logits for every image"
        return reason

    def end_step(self, record):
        reason = self.check(record["loss"], record["same_output"])
        if reason is not None and self.failure is None:
            self.failure = Diverged(record["step"], record["loss"], reason, self.out)
            if self.stop:
                raise self.failure


def diagnose(hist, num_classes=10, window=30) -> dict:
    """What happened in a short run (tinybin.probes.short_run), in numbers and one verdict.

    exploded_at: first step that exploded (the definition above; float32 can reach 1e17 without a NaN).
    dead_from: first step from which every later batch got the same logits for every image.
    acc_last: mean training accuracy over the last `window` steps (chance = 1/C).
    verdict: "exploded, then dead", "exploded", "dead", "learning" (acc_last > 1.5 × chance)
      or "at chance".
    """
    loss = np.asarray(hist["loss"], np.float64)
    first = next((l for l in loss if math.isfinite(l)), math.nan)
    exploded_at = next((i for i, l in enumerate(loss) if exploded(l, first, num_classes)), None)
    same = np.asarray(hist["same_output"], bool)
    dead_from = None
    if same.size and same[-1]:
        live = np.flatnonzero(~same)
        dead_from = int(live[-1] + 1) if live.size else 0
    acc_last = float(np.mean(hist["acc"][-window:]))
    chance = 1.0 / num_classes
    if exploded_at is not None:
        verdict = "exploded, then dead" if dead_from is not None else "exploded"
    elif dead_from is not None:
        verdict = "dead"
    else:
        verdict = "learning" if acc_last > 1.5 * chance else "at chance"
    finite = loss[np.isfinite(loss)]
    return {"loss0": float(loss[0]), "max_loss": float(finite.max()) if finite.size else math.nan,
            "final_loss": float(loss[-1]), "acc_last": acc_last, "window": min(window, len(loss)),
            "exploded_at": exploded_at, "dead_from": dead_from, "non_finite": bool(finite.size < loss.size),
            "verdict": verdict}
