"""A short look at the start of training: `fit` with the paper's recipe, plus a probe."""
from __future__ import annotations

import itertools
import time

from ..data import Batches
from ..optim import SGD, Schedule
from ..train.loop import fit


class _Log:
    def __init__(self, log):
        self.log = log

    def end_step(self, record):
        self.log(record["step"], record["loss"], record["acc"])


def short_run(model, x, y, steps, lr, schedule_epochs=30, batch_size=125, seed=0, probe=None, log=None):
    """`steps` SGD steps of the recipe of P2 §III.A on images x, labels y; returns the per-step history.

    The recipe is the paper's (momentum 0.9, weight decay 5e-4, batch 125, flip + crop + cutout,
    cosine from `lr` to 1e-5) with the cosine laid out over `schedule_epochs` epochs, so a
    200-step look at the start of training sees the learning rates a real run would.
    Batches come from `seed` alone: runs with the same seed see the same images in the same order.
    probe: a Probe on `model`, fed every step. log(step, loss, acc): called every step if given.

    History: loss, acc, lr per step; same_output per step (True when every image of the batch got
    the same logits: the output no longer depends on the input); seconds per step.
    """
    loader = Batches(x, y, batch_size=batch_size, shuffle=True, drop_last=True, augment=True, seed=seed)
    per_epoch = len(loader)
    schedule = Schedule("cosine", schedule_epochs * per_epoch, per_epoch, lr, 1e-5)
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    batches = itertools.chain.from_iterable(loader.epoch(e) for e in itertools.count())
    hooks = ([probe] if probe is not None else []) + ([_Log(log)] if log is not None else [])
    start = time.perf_counter()
    records = fit(model, optimizer, batches, schedule, steps, hooks)
    hist = {k: [r[k] for r in records] for k in ("loss", "acc", "lr", "same_output")}
    hist["seconds_per_step"] = (time.perf_counter() - start) / max(steps, 1)
    return hist
