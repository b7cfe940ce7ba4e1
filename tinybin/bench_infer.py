"""Inference benchmark: `python -m tinybin bench infer`.

Images per second of WRN-20-10 (1-bit, baseline2, TF "same" padding — the authors' network) at
batch 100: float32, eval mode, no_grad, random pixels; weights random unless `--mcdonnell FILE`
loads the released ones (same cost either way). The float path convolves with ±c as float32
matrices (im2col + GEMM): a 1-bit net gets no speed-up from its bits here — BLAS has no
add/subtract-only kernel. `--addsub` also times the add/subtract reference path
(`tinybin.embedded`) on a small net, against the float path on the same net: it shows the
arithmetic, not a fast kernel.
"""
from __future__ import annotations

import statistics
import time
import warnings

import numpy as np


def add_arguments(parser):
    parser.add_argument("--mcdonnell", metavar="FILE", default=None, help="the authors' released .mat model")
    parser.add_argument("--arch", default="20-10", help="DEPTH-WIDTH (ignored with --mcdonnell)")
    parser.add_argument("--variant", default="baseline2", help="variant (ignored with --mcdonnell)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--batches", type=int, default=3, help="timed batches (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed batches first (Numba compilation)")
    parser.add_argument("--addsub", action="store_true",
                        help="also time the add/subtract reference path on WRN-8-1, batch 10")
    return parser


def images_per_second(model, batch_size, batches=3, warmup=1, forward=None, seed=0) -> float:
    """Median images/s of `forward(model, x)` (default: model(x) under no_grad) on random pixels."""
    from .tensor import no_grad

    x = np.random.default_rng(seed).integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32)
    model.eval()

    def run():
        if forward is not None:
            return forward(model, x)
        with no_grad():
            return model(x)

    for _ in range(warmup):
        run()
    times = []
    for _ in range(batches):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return batch_size / statistics.median(times)


def run_bench(args) -> int:
    from .cli import UsageError
    from .models import wrn

    try:
        if args.mcdonnell:
            from .zoo import load_mcdonnell
            model, name = load_mcdonnell(args.mcdonnell), f"{args.mcdonnell} (WRN-20-10 baseline2 1-bit)"
        else:
            depth, width = (int(v) for v in args.arch.split("-"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = wrn(depth, width, variant=args.variant, bits=1, padding="tf-same", rng=0)
            name = f"WRN-{depth}-{width} {args.variant} 1-bit, random weights"
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise UsageError(str(e)) from None
    rate = images_per_second(model, args.batch_size, args.batches, args.warmup)
    print(f"{name}: {rate:.1f} images/s at batch {args.batch_size} (float32, eval, no_grad; "
          f"median of {args.batches} batches)")
    if args.addsub:
        from .embedded import addsub_forward

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            small = wrn(8, 1, variant="baseline2", bits=1, padding="tf-same", rng=0)
        fast = images_per_second(small, 10, args.batches, args.warmup)
        slow = images_per_second(small, 10, args.batches, args.warmup, forward=addsub_forward)
        print(f"WRN-8-1 baseline2 1-bit, batch 10: float path {fast:.0f} images/s, add/subtract reference path "
              f"{slow:.1f} images/s ({fast / slow:.0f}× slower: NumPy sums per output channel, no fast kernel)")
    return 0
