"""`python -m tinybin bench conv|data|train|ops|infer`: the flags of each benchmark in tinybin.bench."""
from __future__ import annotations

import importlib
from pathlib import Path


def _conv(p):
    p.add_argument("--batch", type=int, default=125, help="images per batch")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per figure; the median is shown")
    p.add_argument("--ref-repeats", type=int, default=2, help="repeats of the (slow) NumPy reference")
    p.add_argument("--quick", action="store_true", help="batch 25, 3 repeats, 1 reference repeat")
    p.add_argument("--no-startup", dest="startup", action="store_false", help="skip the fresh-process start-up timing")


def _data(p):
    p.add_argument("--images", type=int, default=50_000,
                   help="synthetic 32x32x3 images per epoch for the augmentation figure")
    p.add_argument("--batch-size", type=int, default=125, help="images per batch")
    p.add_argument("--repeat", type=int, default=3, help="epochs timed per augmentation figure; the median is reported")
    p.add_argument("--seed", type=int, default=0, help="of the synthetic images and the augmentation")
    p.add_argument("--jpeg-tar", type=Path, default=None,
                   help="cifar10-jpeg.tar.gz to extract into a temporary folder and load")
    p.add_argument("--folder", type=Path, default=None,
                   help="an image folder (root/<class>/*.jpg, or with train/ and test/)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes for the first folder load")
    p.add_argument("--no-folder", action="store_true", help="skip the folder figures")


def _train(p):
    from ..bench.train import DEFAULT_CONFIGS

    p.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma-separated width:variant pairs (WRN-depth-width), or "
                   "'all' (adds WRN-20-10: 1, 4, 10 x baseline2, srelu)")
    p.add_argument("--bits", type=int, default=1, choices=[1, 32], help="bits per conv weight")
    p.add_argument("--batch-size", type=int, default=125, help="images per training step")
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration (median reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (Numba compilation, page faults)")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--quick", action="store_true", help="2 timed steps, 1 warm-up")
    p.add_argument("--conv", default="", help="comma-separated convolution settings to compare, each an order "
                   "of algorithms as TINYBIN_CONV takes it (im2col, direct, winograd2, winograd4; e.g. "
                   "im2col,winograd4+direct); default: the current one")
    p.add_argument("--vs-torch", action="store_true",
                   help="also time the same step in PyTorch (the peer kinds of --peers), alternating processes")
    p.add_argument("--rounds", type=int, default=3, help="with --vs-torch: processes per engine and kind (median)")
    p.add_argument("--steal-retries", type=int, default=2, help="with --vs-torch: measure a process again, up to "
                   "this many times, while the host takes more than 5 %% of the CPU time (steal)")
    p.add_argument("--peers", default="", help="with --vs-torch: comma-separated PyTorch kinds (bridge-nchw, "
                   "bridge-cl, plain-nchw, plain-cl); default bridge-nchw,bridge-cl,plain-cl")


def _ops(p):
    p.add_argument("--configs", default="1:srelu", help="comma-separated width:variant pairs (WRN-depth-width)")
    p.add_argument("--bits", type=int, default=1, choices=[1, 32], help="bits per conv weight")
    p.add_argument("--batch-size", type=int, default=125, help="images per training step")
    p.add_argument("--steps", type=int, default=3, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (Numba compilation, page faults)")
    p.add_argument("--depth", type=int, default=20)


def _infer(p):
    p.add_argument("--mcdonnell", metavar="FILE", default=None, help="the authors' released .mat model")
    p.add_argument("--arch", default="20-10", help="DEPTH-WIDTH (ignored with --mcdonnell)")
    p.add_argument("--variant", default="baseline2", help="variant (ignored with --mcdonnell)")
    p.add_argument("--batch-size", type=int, default=100, help="images per forward pass")
    p.add_argument("--batches", type=int, default=3, help="timed batches (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches first (Numba compilation)")
    p.add_argument("--addsub", action="store_true", help="also time the add/subtract reference path on WRN-8-1, batch 10")


BENCHES = {"conv": _conv, "data": _data, "train": _train, "ops": _ops, "infer": _infer}


def add_arguments(p, formatter):
    sub = p.add_subparsers(dest="bench", metavar="{" + ",".join(BENCHES) + "}")
    sub.required = True
    for name, flags in BENCHES.items():
        doc = importlib.import_module(f"tinybin.bench.{name}").__doc__
        flags(sub.add_parser(name, help=doc.strip().splitlines()[0], description=doc, formatter_class=formatter))


def run(args) -> int:
    from .errors import reported

    options = {k: v for k, v in vars(args).items() if k not in ("command", "bench", "argv")}
    with reported():
        importlib.import_module(f"tinybin.bench.{args.bench}").run(**options)
    return 0
