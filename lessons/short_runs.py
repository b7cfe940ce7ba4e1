"""Short training runs that may explode, measured over seeds, and their figure: what lessons 08,
08b and 09 share (lessons/lesson.py holds what every lesson shares).

    import short_runs
    hist, probe = short_runs.probed_run(model, x, y, steps=30, lr=0.1, batch=125, seed=s)
    fig = short_runs.runs_over_seeds_figure({"T=30": (runs, "tab:blue", "-")}, "title")
"""
from __future__ import annotations

import numpy as np

from lesson import pyplot


class StopRun(Exception):
    """Raised by Feed.log to end a run that exploded and then died."""


class Feed:
    """What tinybin.probes.short_run calls every step: the probe; optionally extra weight decay
    (added to every conv's latent gradient after the probe has read it, so SGD applies
    (5e-4 + extra)·W); and an early stop. A run that exploded (tinybin.train.divergence.exploded)
    and then gave every image the same logits (divergence.same_output) for `stop_dead` steps is
    ended there: with every unit at its floor no gradient reaches the body, and decay cannot flip a
    sign (lesson 07: such a run never came back in 150 steps)."""

    def __init__(self, probe, model, extra_decay=0.0, stop_dead=10):
        self.probe, self.model, self.extra, self.stop_dead = probe, model, extra_decay, stop_dead
        self.hist = {"loss": [], "acc": [], "same_output": []}

    def after_backward(self, model, logits, loss, labels=None):
        from tinybin.train.divergence import same_output
        self.probe.after_backward(model, logits, loss, labels)
        self.hist["same_output"].append(same_output(logits))
        if self.extra:
            for _, conv in self.model.convs():
                conv.weight.grad += self.extra * conv.weight.data

    def after_step(self, model=None):
        self.probe.after_step(model)

    def log(self, step, loss, acc):
        from tinybin.train.divergence import exploded
        h = self.hist
        h["loss"].append(loss)
        h["acc"].append(acc)
        blown = any(exploded(v, h["loss"][0], 10) for v in h["loss"])
        if blown and len(h["same_output"]) >= self.stop_dead and all(h["same_output"][-self.stop_dead:]):
            raise StopRun


def probed_run(model, x, y, steps, lr, batch, seed, extra_decay=0.0, sample=0):
    """`steps` steps of tinybin.probes.short_run on `model` with a Probe (no activations) and a
    Feed; stops early once dead. Returns (history, probe): history has loss, acc, same_output."""
    from tinybin.probes import Probe, short_run
    probe = Probe(model, sample=sample, activations=False, seed=seed)
    feed = Feed(probe, model, extra_decay)
    try:
        short_run(model, x, y, steps, lr, batch_size=batch, seed=seed, probe=feed, log=feed.log)
    except StopRun:
        pass
    probe.close()
    return feed.hist, probe


def cell(values, fmt: str = ".3g") -> str:
    """Numbers over seeds -> 'mean [min–max]' of the finite ones, for a table cell ("—" if none)."""
    v = np.array([float(x) for x in values], np.float64)
    v = v[np.isfinite(v)]
    return f"{v.mean():{fmt}} [{v.min():{fmt}}–{v.max():{fmt}}]" if v.size else "—"


def _seed_curves(ax_loss, ax_acc, runs, label, color, ls):
    """One run per seed: loss per step (log) and the training accuracy, running mean of 10 batches
    (of a third of the run if shorter); × where the run exploded."""
    for i, d in enumerate(runs):
        kw = dict(color=color, ls=ls, lw=1.3 if i == 0 else 0.8, alpha=1.0 if i == 0 else 0.5,
                  label=label if i == 0 else None)
        ax_loss.semilogy(d["loss"], **kw)
        k = max(1, min(10, len(d["acc"]) // 3))
        ax_acc.plot(np.arange(k - 1, len(d["acc"])), 100 * np.convolve(d["acc"], np.ones(k) / k, "valid"), **kw)
        if d["exploded_at"] is not None:
            ax_loss.plot(d["exploded_at"], d["loss"][d["exploded_at"]], "x", color=color, ms=8, mew=2)


def runs_over_seeds_figure(groups, title):
    """Loss and training accuracy of short runs over seeds: groups {label: (list of runs, one per
    seed, each with "loss", "acc" and "exploded_at"; colour; line style)}; the first seed thick."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 3.9))
    for label, (runs, color, ls) in groups.items():
        _seed_curves(axes[0], axes[1], runs, label, color, ls)
    axes[0].set(xlabel="step", ylabel="training loss (log)", title="loss (× exploded)")
    axes[1].axhline(10, color="k", ls=":", lw=1)
    axes[1].set(xlabel="step", ylabel="accuracy % (running mean)", title="training accuracy (chance 10 %)",
                ylim=(0, 50))
    for a in axes:
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    return fig
