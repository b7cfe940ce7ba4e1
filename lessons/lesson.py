"""What every lesson in `lessons/` shares: its command-line flags, real CIFAR-10, and its outputs.

    import lesson          # lessons/lesson.py: `python lessons/NN_name.py` puts lessons/ on sys.path

    def main():
        parser = lesson.parser(__doc__, __file__)           # --quick --out --seed --data-dir --archive
        lesson.seeds_flag(parser, full=5, quick=2)          # --seeds: a count or a list (training lessons)
        parser.add_argument("--steps", type=int, default=40, help="SGD steps")
        args = parser.parse_args()                          # --out checked writable; args.seeds a list
        losses = {s: run(args, seed=s) for s in args.seeds}
        claims = [lesson.claim("the loss falls", {s: l[-1] < l[0] for s, l in losses.items()},
                               values={s: l[-1] for s, l in losses.items()})]
        (x_train, y_train), (x_test, y_test) = lesson.load_cifar10(args)
        plt = lesson.pyplot()
        fig, ax = plt.subplots()
        ...
        lesson.save_figure(fig, args, "loss.png")
        lesson.finish(args, {"final_loss": 0.42}, claims)  # results.json + a last "RESULT {...}" line

A comparison a lesson teaches is a claim, and one run is not a measurement: `lesson.claim` takes
the verdict of every seed, prints it with the per-seed values, their mean and range and "holds in
k of n seeds", and `finish` saves the claims in results.json under "claims".

Every figure and `results.json` go into `--out` (default `runs/lessons/<lesson name>`); the folder
is checked writable when the flags are parsed, before any work, so a lesson never computes for
minutes and then fails to save. The last
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


class _Parser(argparse.ArgumentParser):
    """parse_args also resolves --seeds into a list and checks that --out can be written."""

    def parse_args(self, args=None, namespace=None):
        ns = super().parse_args(args, namespace)
        if hasattr(ns, "_seeds_default"):
            ns.seeds = _resolve_seeds(self, ns)
        _check_out(self, Path(ns.out))
        return ns


def _check_out(p: argparse.ArgumentParser, out: Path):
    """One line and exit status 2 if --out is a file or cannot be created or written."""
    if out.exists() and not out.is_dir():
        p.exit(2, f"error: --out {out} is a file, not a folder\n")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        p.exit(2, f"error: --out {out} cannot be written: {e.strerror or e}\n")


def seeds_flag(parser: argparse.ArgumentParser, full: int, quick: int = 2) -> argparse.ArgumentParser:
    """--seeds N (seeds 0..N-1) or --seeds 3,7,11 (those): each seed sets the initial weights and the
    batch order of one run, and every comparison runs on every seed. Default: `full`, or `quick`
    with --quick."""
    parser.add_argument("--seeds", default=None,
                        help=f"a count N (seeds 0..N-1) or a comma-separated list (default: {full}; {quick} with --quick)")
    parser.set_defaults(_seeds_default=(full, quick))
    return parser


def _resolve_seeds(p: argparse.ArgumentParser, ns) -> list[int]:
    full, quick = ns._seeds_default
    text = ns.seeds
    if text is None:
        return list(range(quick if ns.quick else full))
    try:
        parts = [int(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        p.exit(2, f"error: --seeds {text!r} is neither a count nor a comma-separated list of integers\n")
    if len(parts) == 1 and "," not in str(text):
        if parts[0] < 1:
            p.exit(2, f"error: --seeds {text} must be at least 1\n")
        return list(range(parts[0]))
    if not parts or min(parts) < 0 or len(set(parts)) != len(parts):
        p.exit(2, f"error: --seeds {text!r} must list distinct non-negative integers\n")
    return parts


def claim(text: str, holds: dict, values: dict | None = None, unit: str = "", assert_in_quick: bool = False,
          **extra) -> dict:
    """One comparative statement, measured on every seed: {seed: True/False} -> a printed verdict.

    text: the statement as the lesson teaches it; holds: {seed: bool}, whether it held in that
    seed's run; values: {seed: number} behind the verdict (say, the accuracy gap), summarised by
    mean and range; assert_in_quick: a mechanism rather than luck, so the tests assert it holds in
    every seed of --quick. Returns the record `finish` saves under "claims".
    """
    seeds = list(holds)
    k = int(sum(bool(holds[s]) for s in seeds))
    rec = {"claim": text, "holds": k, "seeds": len(seeds), "per_seed": {str(s): bool(holds[s]) for s in seeds},
           "mechanism": bool(assert_in_quick)}
    line = f"CLAIM {text}: holds in {k} of {len(seeds)} seeds"
    if values:
        v = np.array([float(values[s]) for s in seeds if s in values])
        finite = v[np.isfinite(v)]
        rec["values"] = {str(s): float(values[s]) for s in seeds if s in values}
        if finite.size:
            rec.update(mean=float(finite.mean()), min=float(finite.min()), max=float(finite.max()))
            short = unit if len(unit.strip()) <= 2 else ""   # "%", "×" beside each number; a longer unit once
            line += f"  (mean {finite.mean():.3g}{short}, range {finite.min():.3g}–{finite.max():.3g}{short}"
            line += f"; per seed {', '.join(f'{x:.3g}' for x in v)}{'' if short else unit})"
    if unit:
        rec["unit"] = unit
    rec.update(_plain(extra))
    print(line)
    return rec


def parser(doc: str, file: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every lesson takes; add the lesson's own knobs to it.

    doc: the lesson's module docstring (shown by --help); file: its __file__ (names the lesson).
    """
    name = Path(file).stem
    p = _Parser(prog=Path(file).name, description=doc, formatter_class=_Formatter)
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


def finish(args, results: dict, claims: list | None = None) -> dict:
    """Write the lesson's numbers to --out/results.json and print them as the last line:
    `RESULT {...}` (one line of JSON). claims: the records of `claim`, saved under "claims" with
    the seeds they were measured on."""
    results = _plain(results)
    if claims is not None:
        results["claims"] = _plain(claims)
        if hasattr(args, "seeds"):
            results["seed_list"] = _plain(args.seeds)
    path = _out_dir(args) / "results.json"
    write_text(path, json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    print("RESULT " + json.dumps(results))
    return results
