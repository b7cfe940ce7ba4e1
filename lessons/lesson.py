"""What every lesson in `lessons/` shares: its command-line flags, real CIFAR-10, and its outputs.

    import lesson          # lessons/lesson.py: `python lessons/NN_name.py` puts lessons/ on sys.path

    def main():
        parser = lesson.parser(__doc__, __file__)           # --quick --out --seed --data-dir --archive
        parser.add_argument("--steps", type=int, default=40, help="SGD steps")
        args = parser.parse_args()
        (x_train, y_train), (x_test, y_test) = lesson.load_cifar10(args)
        plt = lesson.pyplot()
        fig, ax = plt.subplots()
        ...
        lesson.save_figure(fig, args, "loss.png")
        lesson.finish(args, {"final_loss": 0.42})          # results.json + a last "RESULT {...}" line

Every figure and `results.json` go into `--out` (default `runs/lessons/<lesson name>`). The last
line a lesson prints is `RESULT ` followed by the same JSON, so a reader (or a test) can pick the
numbers out of the log.

Each lesson also states, as plain literals at module level, what it needs and what it makes
(tests/test_lessons.py reads them without importing the lesson):

    NEEDS_DATA = True                 # uses real CIFAR-10 (skipped where no data is available)
    FIGURES = ["loss.png"]            # PNG files written into --out
    RESULT_KEYS = ["final_loss"]      # keys the RESULT line must contain
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from tinybin.io import write_text

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show each flag's default, and the lesson's docstring exactly as written."""


def parser(doc: str, file: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every lesson takes; add the lesson's own knobs to it.

    doc: the lesson's module docstring (shown by --help); file: its __file__ (names the lesson).
    """
    name = Path(file).stem
    p = argparse.ArgumentParser(prog=Path(file).name, description=doc, formatter_class=_Formatter)
    p.add_argument("--quick", action="store_true", help="a smaller run that finishes in well under a minute")
    p.add_argument("--out", type=Path, default=Path("runs/lessons") / name,
                   help="folder for the figures and results.json (created)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--dataset", choices=("cifar10-subset", "cifar10"), default="cifar10-subset",
                   help="cifar10-subset: the 4000/1000 images shipped in datasets/; cifar10: the official "
                        "archive, downloaded into --data-dir on first use (ignored by lessons without data)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder holding (or receiving) the data files (None: $TINYBIN_DATA, else ./datasets)")
    p.add_argument("--archive", type=Path, default=None,
                   help="a CIFAR-10 archive in the official layout to use instead")
    return p


def model_flags(parser: argparse.ArgumentParser, width: int = 1) -> argparse.ArgumentParser:
    """The WRN flags the training lessons share: --depth, --width, --bits, --batch."""
    parser.add_argument("--depth", type=int, default=20, help="WRN depth (6n+2)")
    parser.add_argument("--width", type=int, default=width, help="WRN width k")
    parser.add_argument("--bits", type=int, default=1, choices=(1, 32), help="bits per weight")
    parser.add_argument("--batch", type=int, default=125, help="batch size")
    return parser


def load_cifar10(args, quiet=False):
    """Real CIFAR-10 as ((x_train, y_train), (x_test, y_test)), uint8 NHWC images, int64 labels.

    --archive if given; else the shipped subset (--dataset cifar10-subset, the default) or the
    official archive in --data-dir (--dataset cifar10, downloaded on first use). If the data cannot
    be had, prints one line saying why and exits with status 2. quiet: no line on success
    (worker processes).
    """
    from tinybin.data import ArchiveError, DownloadError, load_cifar10_subset
    from tinybin.data import load_cifar10 as load

    try:
        if args.archive is None and args.dataset == "cifar10-subset":
            (x_train, y_train), (x_test, y_test) = load_cifar10_subset(args.data_dir)
            source = "the shipped subset"
        else:
            (x_train, y_train), (x_test, y_test) = load(data_dir=args.data_dir, archive=args.archive)
            source = args.archive or "the official archive"
    except (DownloadError, ArchiveError, FileNotFoundError) as exc:
        print(f"error: no CIFAR-10 data: {exc}", file=sys.stderr)
        sys.exit(2)
    if not quiet:
        print(f"CIFAR-10 from {source}: {len(x_train)} training and {len(x_test)} test images")
    return (x_train, y_train), (x_test, y_test)


def pyplot():
    """matplotlib.pyplot on the Agg backend: lessons write PNG files and never open a window."""
    from tinybin.figures import pyplot as agg
    return agg()


def loss_accuracy_figure(runs: dict, loss_title: str, accuracy_title: str, title: str):
    """Two panels for short training runs {label: {"loss": [...], "acc": [...]}}: the loss per
    step on a log axis, and the training accuracy as a running mean of 10 batches (chance = 10 %)."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 3.8))
    for label, d in runs.items():
        axes[0].semilogy(d["loss"], lw=1, label=label)
        k = min(10, len(d["acc"]))
        axes[1].plot(np.arange(k - 1, len(d["acc"])), 100 * np.convolve(d["acc"], np.ones(k) / k, "valid"),
                     lw=1, label=label)
    axes[0].set(xlabel="step", ylabel="training loss (log)", title=loss_title)
    axes[1].axhline(10, color="k", ls=":", lw=1)
    axes[1].set(xlabel="step", ylabel="accuracy % (mean of 10 batches)", title=accuracy_title)
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def _out_dir(args) -> Path:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_figure(fig, args, filename: str) -> Path:
    """Save fig as --out/filename (PNG), close it, and say where it went."""
    path = _out_dir(args) / filename
    fig.savefig(path, dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    print(f"wrote {path}")
    return path


def _plain(value):
    """NumPy scalars and arrays -> Python numbers and lists, so json can write them."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def finish(args, results: dict) -> dict:
    """Write the lesson's numbers to --out/results.json and print them as the last line:
    `RESULT {...}` (one line of JSON)."""
    results = _plain(results)
    path = _out_dir(args) / "results.json"
    write_text(path, json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    print("RESULT " + json.dumps(results))
    return results
