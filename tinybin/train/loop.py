"""The training loop a learner reads: one step, evaluation, and `fit` (P2 §III.A's recipe is
in the schedule and the batches handed to it; tinybin.train.run adds the run folder around it).

    from tinybin.train import fit
    history = fit(model, SGD(model.parameters()), batches, Schedule("cosine", 640, 32), steps=640)
"""
from __future__ import annotations

import numpy as np

from ..ops.loss import cross_entropy
from ..tensor import no_grad
from .divergence import same_output


def train_step(model, optimizer, x, y, lr, after_backward=None, after_step=None):
    """One SGD step on a batch: forward, mean cross-entropy, backward, update.

    after_backward(model, logits, loss), if given, runs between backward and the update (probes
    read gradients there); after_step(model) runs after the update (update sizes, sign flips).
    Returns (loss, number correct). `fit` takes the same step, with hook objects.
    """
    optimizer.zero_grad()
    logits = model(x)                                    # forward
    loss = cross_entropy(logits, y)
    loss.backward()                                      # backward: every .grad filled in
    if after_backward is not None:
        after_backward(model, logits, loss)
    optimizer.step(lr)                                   # update the latent weights
    if after_step is not None:
        after_step(model)
    correct = int((logits.data.argmax(axis=1) == y).sum())
    return float(loss.data), correct


def fit(model, optimizer, batches, schedule, steps, hooks=(), start=0):
    """Train `model` for `steps` SGD steps on `batches`; returns one record per step.

    batches: an iterable of (x, y) — images (N, H, W, C), integer labels (N,) — at least `steps` long.
    schedule: step -> learning rate (tinybin.optim.Schedule); steps are numbered from `start`.
    hooks: objects with any of these methods, called in this order every step:
        after_backward(model, logits, loss, y)   gradients are there, weights not yet updated
        after_step(model)                        weights updated
        end_step(record)                         may raise (a divergence stops the run)
    record = {step, lr, loss, acc, images, same_output}; same_output: every image of the batch
    got the same logits (tinybin.train.divergence). Hooks read the record, they do not add to it.
    """
    backward = [h.after_backward for h in hooks if hasattr(h, "after_backward")]
    stepped = [h.after_step for h in hooks if hasattr(h, "after_step")]
    ended = [h.end_step for h in hooks if hasattr(h, "end_step")]
    history = []
    model.train()
    for step, (x, y) in zip(range(start, start + steps), batches):
        lr = schedule(step)
        optimizer.zero_grad()
        logits = model(x)                                # forward
        loss = cross_entropy(logits, y)
        loss.backward()                                  # backward: every .grad filled in
        for hook in backward:
            hook(model, logits, loss, y)
        optimizer.step(lr)                               # update the latent weights
        for hook in stepped:
            hook(model)
        correct = int((logits.data.argmax(axis=1) == y).sum())
        record = {"step": step, "lr": lr, "loss": float(loss.data), "acc": correct / len(y), "images": len(y),
                  "same_output": same_output(logits)}
        history.append(record)
        for hook in ended:
            hook(record)
    return history


def evaluate(model, x, y, batch_size=500):
    """(mean loss, accuracy) of `model` on images x (uint8 or float NHWC) and labels y, in eval
    mode, single centre view (no augmentation). The model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        with no_grad():
            for i in range(0, len(x), batch_size):
                xb, yb = np.asarray(x[i:i + batch_size], dtype=model.dtype), np.asarray(y[i:i + batch_size])
                logits = model(xb)
                total_loss += float(cross_entropy(logits, yb).data) * len(yb)
                correct += int((logits.data.argmax(axis=1) == yb).sum())
    finally:
        model.train(was_training)
    n = max(len(x), 1)
    return total_loss / n, correct / n
