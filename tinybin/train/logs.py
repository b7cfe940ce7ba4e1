"""What a run shows and keeps: the live progress bar, JSON-lines logs, and curves.png."""
from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from ..figures import pyplot
from ..io import write_text


class Progress:
    """A live one-line bar on a terminal (step, loss, acc, images/s, ETA); silent otherwise."""

    def __init__(self, total_steps, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = total_steps
        self.last = 0.0

    def update(self, step, epoch, loss, acc, images_per_s, eta_s, force=False):
        now = time.perf_counter()
        if not self.live or (now - self.last < 0.2 and not force):
            return
        self.last = now
        self.stream.write(f"\r  epoch {epoch + 1} step {step + 1}/{self.total}  loss {loss:.4f}  acc {100 * acc:5.1f}%  "
                          f"{images_per_s:6.0f} img/s  ETA {_hms(eta_s)}  \033[K")
        self.stream.flush()

    def clear(self):
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _hms(seconds):
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def append_jsonl(path, *records):
    """Append one JSON line per record."""
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def read_jsonl(path) -> tuple:
    """(records, torn) of a JSON-lines log; torn: its last line was cut off mid-write (a crash),
    and is left out. ValueError naming the file and line for any other damage."""
    text = Path(path).read_text(errors="replace")
    lines = text.split("\n")  # a complete log ends with "\n": its last piece is empty
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            reason = None if isinstance(record, dict) else "not an object"
        except json.JSONDecodeError as e:
            if number == len(lines):  # no newline after it: the write never finished
                return records, True
            reason = e.msg
        if reason is not None:
            raise ValueError(f"{path} line {number} is not a JSON record ({reason}): the log is damaged; "
                             f"repair or delete that line, or start again with --overwrite")
        records.append(record)
    return records, False


def truncate_jsonl(path, keep):
    """Keep only the records for which keep(record) is true (used on resume). A last line cut off
    by a crash is dropped with a warning naming the file: an append-only log ends like this after
    a crash, and the checkpoint it belongs to was never written."""
    path = Path(path)
    if not path.exists():
        return
    records, torn = read_jsonl(path)
    if torn:
        warnings.warn(f"{path}: its last line was cut off (a crash while it was written); dropped it")
    write_text(path, "".join(json.dumps(r) + "\n" for r in records if keep(r)))


def plot_curves(out_dir, title=None):
    """curves.png from steps.jsonl and metrics.jsonl: training loss per step (log scale when it
    spans decades), train/test accuracy per epoch, the final test accuracy with each BN
    statistics tested (labelled), and a red line where the run diverged."""
    plt = pyplot()
    out_dir = Path(out_dir)
    read = lambda name: read_jsonl(out_dir / name)[0] if (out_dir / name).exists() else []
    steps, records = read("steps.jsonl"), read("metrics.jsonl")
    epochs = [r for r in records if r.get("kind") == "epoch"]
    final = next((r for r in reversed(records) if r.get("kind") == "final"), None)
    diverged = [r for r in records if r.get("kind") == "diverged"]
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
    if final is not None:
        last = epochs[-1]["epoch"] if epochs else 0
        shown = {"recalibrated": "recalibrated BN", "moving": "moving-average BN", None: "no BN"}
        if "test_acc_moving" in final and final.get("bn_stats") == "recalibrated":
            ax2.plot([last], [100 * final["test_acc_moving"]], "s", ms=6,
                     label=f"final, moving-average BN: {100 * final['test_acc_moving']:.1f} %")
        ax2.plot([last], [100 * final["test_acc"]], "*", ms=11,
                 label=f"final, {shown.get(final.get('bn_stats'), final.get('bn_stats'))}: {100 * final['test_acc']:.1f} %")
    for i, r in enumerate(diverged):
        ax1.axvline(r["step"], color="red", lw=1, ls="--", label=None if i else f"diverged ({r['reason']})")
    if diverged and not epochs:
        ax2.text(0.5, 0.5, f"diverged at step {diverged[0]['step']}\nbefore the first epoch ended",
                 ha="center", va="center", color="red", transform=ax2.transAxes)
    ax1.set(xlabel="step", ylabel="cross-entropy", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy %", title="accuracy")
    ax2.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    name = out_dir.resolve().name
    fig.suptitle(f"{title} — {name}" if title else name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=100)
    plt.close(fig)
