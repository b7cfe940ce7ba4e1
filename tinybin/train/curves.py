"""curves.png: a run's loss and accuracy, drawn from its logs (both trainers draw it here)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..figures import pyplot


def _records(path):
    """The JSON records of a log; a line that does not parse (cut by a crash) is left out of the figure."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_curves(out_dir, title=None):
    """curves.png from steps.jsonl and metrics.jsonl: training loss per step (log scale when it
    spans decades), train/test accuracy per epoch, the final test accuracy with each BN
    statistics tested (labelled), a grey line where the run was resumed and a red one where it
    diverged. title: what the run trains (tinybin.train.run.title), e.g. "WRN-20-1 baseline2, 1-bit"."""
    plt = pyplot()
    out_dir = Path(out_dir)
    steps, records = _records(out_dir / "steps.jsonl"), _records(out_dir / "metrics.jsonl")
    epochs = [r for r in records if r.get("kind") == "epoch"]
    final = next((r for r in reversed(records) if r.get("kind") == "final"), None)
    diverged = [r for r in records if r.get("kind") == "diverged"]
    resumed = [r for r in records if r.get("kind") == "resumed"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if steps:
        s = np.array([r["step"] for r in steps])
        loss = np.array([r["loss"] for r in steps], dtype=float)
        ax1.plot(s, loss, lw=0.6, alpha=0.5, label="batch")
        if len(loss) >= 20:
            k = max(len(loss) // 50, 5)
            ax1.plot(s[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
        finite = loss[np.isfinite(loss)]
        if finite.size and finite.max() > 20 * max(finite.min(), 1e-12):
            ax1.set_yscale("log")  # a divergence spans decades
    if epochs:
        steps_at = [r["step"] for r in epochs]
        ax1.plot(steps_at, [r["test_loss"] for r in epochs], "o-", ms=3, label="test")
        e = [r["epoch"] for r in epochs]
        ax2.plot(e, [100 * r["train_acc"] for r in epochs], "o-", ms=3, label="train (augmented)")
        ax2.plot(e, [100 * r["test_acc"] for r in epochs], "o-", ms=3, label="test (BN moving averages)")
    last = epochs[-1]["epoch"] if epochs else 0
    if final is not None:
        shown = {"recalibrated": "recalibrated BN", "moving": "moving-average BN", None: "no BN"}
        # hollow markers: the last epoch's point and the final ones often coincide, and stay visible
        if "test_acc_moving" in final and final.get("bn_stats") == "recalibrated":
            ax2.plot([last], [100 * final["test_acc_moving"]], "s", ms=8, mfc="none", mew=1.5,
                     label=f"final, moving-average BN: {100 * final['test_acc_moving']:.1f} %")
        ax2.plot([last], [100 * final["test_acc"]], "*", ms=14, mfc="none", mew=1.5,
                 label=f"final, {shown.get(final.get('bn_stats'), final.get('bn_stats'))}: {100 * final['test_acc']:.1f} %")
    for i, r in enumerate(resumed):
        label = None if i else "resumed"
        ax1.axvline(r["step"], color="0.4", lw=1, ls=":", label=label)
        ax2.axvline(r["epoch"], color="0.4", lw=1, ls=":", label=label)
    for i, r in enumerate(diverged):
        ax1.axvline(r["step"], color="red", lw=1, ls="--", label=None if i else f"diverged ({r['reason']})")
    if diverged and not epochs:
        ax2.text(0.5, 0.5, f"diverged at step {diverged[0]['step']}\nbefore the first epoch ended",
                 ha="center", va="center", color="red", transform=ax2.transAxes)
    ax1.set(xlabel="step", ylabel="cross-entropy", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy %", title="accuracy")
    # epochs are whole numbers, counted from 0 (the start): one epoch is not drawn as 0.96–1.04
    ax2.set_xlim(0, max(last, 1) * 1.05 + 0.1)
    for ax in (ax1, ax2):
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=100)
    plt.close(fig)
