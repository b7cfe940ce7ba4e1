"""Training-step benchmark: `python -m tinybin bench train` (or `python -m tinybin.bench_train`).

One training step = forward, cross-entropy, backward, SGD update, at batch 125 on random images.
For each configuration (WRN-20-1 and WRN-20-4, baseline2 and srelu, 1-bit by default) it prints

  step ms, images/s     median over the timed steps (after warm-up steps, which compile)
  conv ms               time inside the convolutions' forward and backward in those same steps
                        (the conv Function is wrapped with a timer)
  step/conv             the whole step over its convolutions: what everything else — BN,
                        activations, pooling, loss, autograd, optimizer — adds (target <= 1.5 for
                        WRN-20-4 srelu 1-bit)
  peak MB               the process's peak resident memory (ru_maxrss; target <= 3 GB)

Each configuration runs in a fresh process, so peak memory is its own. `--conv im2col,winograd4`
runs every configuration once per convolution algorithm (TINYBIN_CONV, one process each, in turn)
and prints each step's speed-up over the first algorithm's. The paper's argument for
dropping BN on embedded hardware is that it costs work; here srelu should be measurably faster
than baseline2 at the same width.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

DEFAULT_CONFIGS = "1:baseline2,1:srelu,4:baseline2,4:srelu"
RATIO_TARGET = 1.5
MEMORY_TARGET_MB = 3072


def add_arguments(parser):
    parser.add_argument("--configs", default=DEFAULT_CONFIGS,
                        help="comma-separated width:variant pairs (WRN-20-width)")
    parser.add_argument("--bits", type=int, default=1, choices=[1, 32])
    parser.add_argument("--batch-size", type=int, default=125)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (Numba compilation, page faults)")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2 timed steps, 1 warm-up")
    parser.add_argument("--conv", default="", help="comma-separated convolution algorithms to compare "
                        "(im2col, winograd2, winograd4); default: the selected one (TINYBIN_CONV)")
    return parser


def conv_function_class():
    """The autograd Function behind F.conv2d (found by running one, not by name)."""
    from . import functional as F
    from .tensor import Tensor

    x = Tensor(np.zeros((1, 3, 3, 1), np.float32), requires_grad=True)
    return F.conv2d(x, Tensor(np.zeros((1, 1, 1, 1), np.float32)))._node.fn


def instrument_conv(timer: list):
    """Wrap the conv Function's forward and backward so their time adds into timer[0]."""
    cls = conv_function_class()
    forward, backward = cls.forward, cls.backward

    def timed_forward(ctx, *args, **kwargs):
        t = time.perf_counter()
        try:
            return forward(ctx, *args, **kwargs)
        finally:
            timer[0] += time.perf_counter() - t

    def timed_backward(ctx, dout):
        t = time.perf_counter()
        try:
            return backward(ctx, dout)
        finally:
            timer[0] += time.perf_counter() - t

    cls.forward, cls.backward = staticmethod(timed_forward), staticmethod(timed_backward)


def measure(width, variant, bits=1, depth=20, batch_size=125, steps=5, warmup=2, seed=0) -> dict:
    """Time training steps of one configuration in this process; returns the figures."""
    import resource
    import warnings

    from .models import wrn
    from .optim import SGD
    from .train import train_step

    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the default temperature note
        model = wrn(depth, width, variant=variant, bits=bits, rng=rng)
    opt = SGD(model.parameters(), lr=0.01)
    x = rng.integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    timer = [0.0]
    instrument_conv(timer)
    for _ in range(warmup):
        train_step(model, opt, x, y, 0.01)
    step_s, conv_s = [], []
    for _ in range(steps):
        timer[0] = 0.0
        t = time.perf_counter()
        train_step(model, opt, x, y, 0.01)
        step_s.append(time.perf_counter() - t)
        conv_s.append(timer[0])
    step, conv = statistics.median(step_s), statistics.median(conv_s)
    ratios = [s / c for s, c in zip(step_s, conv_s)]
    return dict(width=width, variant=variant, bits=bits, depth=depth, batch_size=batch_size,
                step_ms=1e3 * step, conv_ms=1e3 * conv, ratio=statistics.median(ratios),
                images_per_s=batch_size / step,
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _run_one(width, variant, args, conv="") -> dict:
    cmd = [sys.executable, "-m", "tinybin.bench_train", "--one", f"{width}:{variant}", "--bits", str(args.bits),
           "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--depth", str(args.depth)]
    env = dict(os.environ, TINYBIN_CONV=conv) if conv else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark of WRN-{args.depth}-{width} {variant} failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(args) -> int:
    if args.quick:
        args.steps, args.warmup = 2, 1
    configs = []
    for item in args.configs.split(","):
        width, _, variant = item.strip().partition(":")
        configs.append((int(width), variant or "srelu"))
    print(f"training step: forward + loss + backward + SGD, batch {args.batch_size}, {args.bits}-bit, "
          f"median of {args.steps} steps after {args.warmup} warm-up; threads: "
          f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}, {os.cpu_count()} CPUs")
    print(f"{'model':<32}{'step ms':>9}{'images/s':>10}{'conv ms':>9}{'step/conv':>11}{'peak MB':>9}"
          + (f"  speed-up over {args.conv.split(',')[0].strip()}" if args.conv else ""))
    results = []
    convs = [c.strip() for c in args.conv.split(",") if c.strip()]
    for width, variant in configs:
        steps = {}
        for conv in convs or [""]:
            r = _run_one(width, variant, args, conv)
            steps[conv] = r["step_ms"]
            if conv == (convs or [""])[0]:
                results.append(r)
            label = f"WRN-{args.depth}-{width} {variant}" + (f" {conv}" if conv else "")
            gain = f"{steps[convs[0]] / r['step_ms']:7.2f}x" if conv and conv != convs[0] else ""
            print(f"{label:<32}{r['step_ms']:9.0f}{r['images_per_s']:10.1f}"
                  f"{r['conv_ms']:9.0f}{r['ratio']:11.2f}{r['peak_mb']:9.0f}{gain}", flush=True)
    by = {(r["width"], r["variant"]): r for r in results}
    ok = True
    for width in sorted({w for w, _ in configs}):
        if (width, "srelu") in by and (width, "baseline2") in by:
            s, b = by[(width, "srelu")], by[(width, "baseline2")]
            print(f"WRN-{args.depth}-{width}: srelu step is {100 * (1 - s['step_ms'] / b['step_ms']):.1f} % faster "
                  f"than baseline2 ({s['step_ms']:.0f} vs {b['step_ms']:.0f} ms)")
    if (4, "srelu") in by:
        r = by[(4, "srelu")]
        good = r["ratio"] <= RATIO_TARGET
        ok &= good
        print(f"target step/conv <= {RATIO_TARGET} for WRN-{args.depth}-4 srelu: {r['ratio']:.2f} "
              f"{'OK' if good else 'MISSED'}")
    peak = max(r["peak_mb"] for r in results)
    good = peak <= MEMORY_TARGET_MB
    ok &= good
    print(f"target peak memory <= {MEMORY_TARGET_MB} MB: {peak:.0f} MB {'OK' if good else 'MISSED'}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # width:variant, run in this process, print JSON
    args = parser.parse_args(argv)
    if args.one:
        width, _, variant = args.one.partition(":")
        print(json.dumps(measure(int(width), variant, args.bits, args.depth, args.batch_size, args.steps,
                                 args.warmup)))
        return 0
    return run_bench(args)


if __name__ == "__main__":
    sys.exit(main())
