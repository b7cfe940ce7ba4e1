"""Plots of probe records: CCDFs of gradient samples per phase of training, tail numbers per step."""
from __future__ import annotations

import numpy as np

from ..figures import pyplot
from .points import GRAD_LABELS
from .statistics import ccdf


def plot_ccdf(ax, values, label=None, **kw):
    """P(|g| > x) against x on log-log axes."""
    x, p = ccdf(values)
    if x.size and x[0] == 0:          # log axes cannot show 0
        x, p = x[1:], p[1:]
    if x.size > 4000:                 # draw ~2000 points, dense in the tail (large x, small p)
        keep = x.size - np.unique(np.geomspace(1, x.size, 2000).astype(int))
        x, p = x[keep], p[keep]
    ax.loglog(x, p, label=label, **kw)
    ax.set_xlabel("|g|")
    ax.set_ylabel("P(|g| > x)")
    ax.grid(alpha=0.3, which="both")


def plot_ccdf_phases(runs: dict, point: str, phases, normalise=True):
    """One panel per phase (first, last) of steps, one CCDF curve per run.

    runs: {label: Probe}. normalise: divide each phase's values by their std, so the curves
    compare *shapes* (tails), not sizes; a Gaussian's CCDF is drawn for reference.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(phases), figsize=(4.2 * len(phases), 3.6), squeeze=False)
    gauss = np.abs(np.random.default_rng(0).standard_normal(200_000))
    for ax, (first, last) in zip(axes[0], phases):
        for label, probe in runs.items():
            v = probe.values(point, first, last).astype(np.float64)
            if v.size < 2:
                continue
            if normalise:
                v = v / max(v.std(), 1e-300)
            plot_ccdf(ax, v, label=label, lw=1.2)
        if normalise:
            plot_ccdf(ax, gauss, label="Gaussian", color="k", ls=":", lw=1)
            ax.set_xlabel("|g| / std")
            ax.set_xlim(left=1e-2)           # the tail is on the right; the bulk needs no room
        ax.set_title(f"steps {first}–{last}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"CCDF of {GRAD_LABELS.get(point, point)}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_over_time(runs: dict, point: str, stats=("std", "kurtosis", "p999", "max")):
    """std, kurtosis, 99.9th percentile and max of |g| per step, one curve per run (log y)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(stats), figsize=(4.0 * len(stats), 3.4), squeeze=False)
    titles = {"std": "std", "kurtosis": "kurtosis (Gaussian = 3)", "p999": "99.9th percentile of |g|",
              "max": "max |g|"}
    for ax, stat in zip(axes[0], stats):
        for label, probe in runs.items():
            ax.semilogy(probe.series("step"), probe.series("grad", point, stat), lw=1, label=label)
        if stat == "kurtosis":
            ax.axhline(3, color="k", ls=":", lw=1)
        ax.set_title(titles.get(stat, stat), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(GRAD_LABELS.get(point, point), fontsize=10)
    fig.tight_layout()
    return fig
