"""Training-step benchmark: `python -m tinybin bench train`.

One training step = forward, cross-entropy, backward, SGD update, at batch 125 on random images.
For each configuration (WRN-20-1 and WRN-20-4, baseline2 and srelu, 1-bit by default) it prints

  step ms, images/s     median over the timed steps (after warm-up steps, which compile)
  conv ms               time inside the convolutions' forward and backward in those same steps
                        (the conv Function is wrapped with a timer)
  step/conv             the whole step over its convolutions: what everything else — BN,
                        activations, pooling, loss, autograd, optimizer — adds (target <= 1.5 for
                        WRN-20-4 srelu 1-bit)
  peak MB               the process's peak resident memory (ru_maxrss; target <= 3 GB)

Each configuration runs in a fresh process, so peak memory is its own. `--conv
im2col,winograd4+direct` runs every configuration once per convolution setting (each an order of
the rows of kernels/conv_algorithms.py, passed as TINYBIN_CONV to one process each, in turn) and
prints each step's speed-up over the first one's. The paper's argument for
dropping BN on embedded hardware is that it costs work; here srelu should be measurably faster
than baseline2 at the same width.

`--configs all` adds WRN-20-10 (the paper's width) to the four default rows.

`--vs-torch` (PyTorch installed: `pip install 'tinybin[torch]'`) times the same step in PyTorch
(tinybin.bench.versus; the PyTorch networks: tinybin.bench.peer), each engine in its own process,
taking turns for `--rounds` rounds (default 3). It prints each engine's median images/s, tinybin's
over the fastest PyTorch kind's, peak memory, and the 1-minute load average read around every
process, with a warning when the machine was busy (which favours tinybin). Targets (issue 23 §2):
tinybin >= 1.05x the best PyTorch at WRN-20-1 and WRN-20-4, >= 1.0x at WRN-20-10; peak memory <=
the fastest PyTorch's; srelu at least as fast as baseline2 at every width. Only a quiet machine's
figures (load < 1 on 2 cores, >= 3 rounds) count.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from statistics import median

import numpy as np

from .timer import median_ms, time_function

DEFAULT_CONFIGS = "1:baseline2,1:srelu,4:baseline2,4:srelu"
CONFIG_SETS = {"default": DEFAULT_CONFIGS, "all": DEFAULT_CONFIGS + ",10:baseline2,10:srelu"}   # --configs NAME
RATIO_TARGET = 1.5
MEMORY_TARGET_MB = 3072


def instrument_conv(timer: list):
    """Time the conv Function's forward and backward (ops/conv.py's Conv2d) into timer[0] (seconds)."""
    from ..ops.conv import Conv2d

    def add(name, pass_, seconds):
        timer[0] += seconds

    time_function(Conv2d, add)


def measure(width, variant, bits=1, depth=20, batch_size=125, steps=5, warmup=2, seed=0) -> dict:
    """Time training steps of one configuration in this process; returns the figures."""
    import resource

    from ..models import wrn
    from ..models.wrn import temperature_for
    from ..optim import SGD
    from ..train import train_step

    rng = np.random.default_rng(seed)
    model = wrn(depth, width, variant=variant, bits=bits, rng=rng, temperature=temperature_for(variant, bits))
    opt = SGD(model.parameters(), lr=0.01)
    x = rng.integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    timer = [0.0]
    instrument_conv(timer)
    step_ms, conv_ms = [], []

    def step():
        timer[0] = 0.0
        t = time.perf_counter()
        train_step(model, opt, x, y, 0.01)
        step_ms.append(1e3 * (time.perf_counter() - t))
        conv_ms.append(1e3 * timer[0])

    median_ms(step, steps, warmup)
    step_ms, conv_ms = step_ms[warmup:], conv_ms[warmup:]          # the timed steps
    step, conv = median(step_ms), median(conv_ms)
    ratios = [s / c for s, c in zip(step_ms, conv_ms)]
    return dict(width=width, variant=variant, bits=bits, depth=depth, batch_size=batch_size,
                step_ms=step, conv_ms=conv, ratio=median(ratios), images_per_s=1e3 * batch_size / step,
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _run_one(width, variant, bits, depth, batch_size, steps, warmup, conv="", peer="") -> dict:
    """One configuration in a fresh process: tinybin, or PyTorch with peer = a kind of bench.peer."""
    call = (f"peer import measure_torch as m; print(json.dumps(m({width}, {variant!r}, {bits}, {depth}, "
            f"{batch_size}, {steps}, {warmup}, kind={peer!r})))" if peer else
            f"train import measure as m; print(json.dumps(m({width}, {variant!r}, {bits}, {depth}, "
            f"{batch_size}, {steps}, {warmup})))")
    cmd = [sys.executable, "-c", f"import json; from tinybin.bench.{call}"]
    env = dict(os.environ, TINYBIN_CONV=conv) if conv else None
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        who = f"PyTorch {peer}" if peer else "tinybin"
        raise RuntimeError(f"benchmark of WRN-{depth}-{width} {variant} ({who}) failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _versus(configs, bits, batch_size, steps, warmup, depth, rounds, peers, steal_retries) -> dict:
    from .peer import KINDS, PEERS, torch_available
    from .versus import compare_with_torch

    if rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {rounds}")
    if steal_retries < 0:
        raise ValueError(f"--steal-retries must be >= 0, got {steal_retries}")
    peers = [p.strip() for p in peers.split(",") if p.strip()] or list(PEERS)
    bad = [p for p in peers if p not in KINDS]
    if bad:
        raise ValueError(f"--peers: {bad[0]!r} is not a PyTorch kind ({', '.join(KINDS)})")
    if not torch_available():
        raise ValueError("--vs-torch needs PyTorch: pip install 'tinybin[torch]'")
    print(f"training step: forward + loss + backward + SGD, WRN-{depth}, batch {batch_size}, {bits}-bit, median of "
          f"{steps} steps after {warmup} warm-up, {rounds} round(s), PyTorch kinds {','.join(peers)}, "
          f"{os.cpu_count()} CPUs, NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}, "
          f"load {os.getloadavg()[0]:.1f}")

    def run_one(width, variant, peer):
        return _run_one(width, variant, bits, depth, batch_size, steps, warmup, peer=peer)

    return compare_with_torch(configs, run_one, depth, rounds, peers, steal_retries=steal_retries)


def parse_configs(text):
    """'1:baseline2,4:srelu' -> [(1, 'baseline2'), (4, 'srelu')], or a name of CONFIG_SETS ("all");
    ValueError naming a bad item."""
    from ..models.wrn import VARIANTS

    text = CONFIG_SETS.get(text.strip(), text)
    configs = []
    for item in text.split(","):
        width, _, variant = item.strip().partition(":")
        variant = variant or "srelu"
        if not width.isdigit() or int(width) < 1 or variant not in VARIANTS:
            raise ValueError(f"--configs: {item.strip()!r} is not WIDTH:VARIANT (e.g. 4:srelu; variants: "
                             f"{', '.join(VARIANTS)}; or a set: {', '.join(CONFIG_SETS)})")
        configs.append((int(width), variant))
    return configs


def run(configs=DEFAULT_CONFIGS, bits=1, batch_size=125, steps=5, warmup=2, depth=20, quick=False, conv="",
        vs_torch=False, rounds=3, peers="", steal_retries=2) -> dict:
    """Print the table of the module docstring; returns {"WRN-20-4 srelu": figures, ...}.
    conv: comma-separated convolution settings to compare, each a TINYBIN_CONV value ("im2col,winograd4+direct")."""
    convs = [c.strip() for c in conv.split(",") if c.strip()]
    if quick:
        steps, warmup, rounds = 2, 1, 1
    configs = parse_configs(configs)
    if vs_torch:
        return _versus(configs, bits, batch_size, steps, warmup, depth, rounds, peers, steal_retries)
    print(f"training step: forward + loss + backward + SGD, batch {batch_size}, {bits}-bit, "
          f"median of {steps} steps after {warmup} warm-up; threads: "
          f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}, {os.cpu_count()} CPUs")
    print(f"{'model':<32}{'step ms':>9}{'images/s':>10}{'conv ms':>9}{'step/conv':>11}{'peak MB':>9}"
          + (f"  speed-up over {convs[0]}" if convs else ""))
    results = []
    for width, variant in configs:
        step_ms = {}
        for algorithm in convs or [""]:
            r = _run_one(width, variant, bits, depth, batch_size, steps, warmup, algorithm)
            step_ms[algorithm] = r["step_ms"]
            if algorithm == (convs or [""])[0]:
                results.append(r)
            label = f"WRN-{depth}-{width} {variant}" + (f" {algorithm}" if algorithm else "")
            gain = f"{step_ms[convs[0]] / r['step_ms']:7.2f}x" if algorithm and algorithm != convs[0] else ""
            print(f"{label:<32}{r['step_ms']:9.0f}{r['images_per_s']:10.1f}"
                  f"{r['conv_ms']:9.0f}{r['ratio']:11.2f}{r['peak_mb']:9.0f}{gain}", flush=True)
    by = {(r["width"], r["variant"]): r for r in results}
    for width in sorted({w for w, _ in configs}):
        if (width, "srelu") in by and (width, "baseline2") in by:
            s, b = by[(width, "srelu")], by[(width, "baseline2")]
            print(f"WRN-{depth}-{width}: srelu step is {100 * (1 - s['step_ms'] / b['step_ms']):.1f} % faster "
                  f"than baseline2 ({s['step_ms']:.0f} vs {b['step_ms']:.0f} ms)")
    if (4, "srelu") in by:
        r = by[(4, "srelu")]
        good = r["ratio"] <= RATIO_TARGET
        print(f"target step/conv <= {RATIO_TARGET} for WRN-{depth}-4 srelu: {r['ratio']:.2f} "
              f"{'OK' if good else 'MISSED'}")
    peak = max(r["peak_mb"] for r in results)
    good = peak <= MEMORY_TARGET_MB
    print(f"target peak memory <= {MEMORY_TARGET_MB} MB: {peak:.0f} MB {'OK' if good else 'MISSED'}")
    return {f"WRN-{depth}-{r['width']} {r['variant']}": r for r in results}

