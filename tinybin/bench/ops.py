"""Where a training step's time goes, op by op: `python -m tinybin bench ops`.

One training step (forward, cross-entropy, backward, SGD) of one WRN configuration at batch 125
on random images, with every autograd Function's forward and backward wrapped in a timer. For
each op it prints

  calls      forward calls per step (the backward runs once per forward call)
  fwd ms     time in its forward, summed over the step (median over the timed steps)
  bwd ms     time in its backward, likewise
  share      its forward + backward over the whole step

and last the rest of the step: autograd bookkeeping, the loss's Python, the SGD update. Use it
to see what to make faster next; `bench train` gives the step's speed and memory, `bench conv`
one convolution's algorithms. The timers themselves cost a few microseconds per call.
"""
from __future__ import annotations

import time
from collections import defaultdict
from statistics import median

import numpy as np

from .timer import restore_functions, time_function
from .train import parse_configs


def _function_classes():
    """Every Function subclass the ops define (imported through tinybin.functional)."""
    from .. import functional  # noqa: F401  (defines the ops)
    from ..tensor import Function

    found, todo = [], [Function]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.append(sub)
            todo.append(sub)
    return found


def instrument(totals: dict, calls: dict) -> list:
    """Time every Function's forward and backward into totals[(name, "f"|"b")], count forward
    calls in calls[name]; returns what restore_functions() needs."""
    def add(name, pass_, seconds):
        totals[(name, pass_)] += seconds
        calls[name] += pass_ == "f"

    return [time_function(cls, add) for cls in _function_classes()
            if "forward" in cls.__dict__ or "backward" in cls.__dict__]


def profile(width=1, variant="srelu", bits=1, depth=20, batch_size=125, steps=3, warmup=1, seed=0) -> dict:
    """{"step_ms": ..., "ops": {name: {"calls", "fwd_ms", "bwd_ms"}}} for one configuration."""
    from ..models import wrn
    from ..models.wrn import temperature_for
    from ..optim import SGD
    from ..train import train_step

    rng = np.random.default_rng(seed)
    model = wrn(depth, width, variant=variant, bits=bits, rng=rng, temperature=temperature_for(variant, bits))
    opt = SGD(model.parameters(), lr=0.01)
    x = rng.integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    for _ in range(warmup):                                  # Numba compilation, first page faults
        train_step(model, opt, x, y, 0.01)
    per_step = []
    totals, calls = defaultdict(float), defaultdict(int)
    saved = instrument(totals, calls)
    try:
        for _ in range(steps):
            totals.clear()
            calls.clear()
            t = time.perf_counter()
            train_step(model, opt, x, y, 0.01)
            per_step.append((time.perf_counter() - t, dict(totals), dict(calls)))
    finally:
        restore_functions(saved)
    names = sorted({name for _, tot, _ in per_step for name, _ in tot})
    ops = {name: {"calls": per_step[-1][2].get(name, 0),
                  "fwd_ms": 1e3 * median(tot.get((name, "f"), 0.0) for _, tot, _ in per_step),
                  "bwd_ms": 1e3 * median(tot.get((name, "b"), 0.0) for _, tot, _ in per_step)}
           for name in names}
    return {"step_ms": 1e3 * median(s for s, _, _ in per_step), "ops": ops}


def run(configs="1:srelu", bits=1, batch_size=125, steps=3, warmup=1, depth=20) -> dict:
    """Print one table per configuration (see the module docstring); returns the figures."""
    if steps < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"--steps must be >= 1, --warmup >= 0 and --batch-size >= 1; got {steps}, {warmup}, "
                         f"{batch_size}")
    results = {}
    for width, variant in parse_configs(configs):
        r = profile(width, variant, bits, depth, batch_size, steps, warmup)
        label = f"WRN-{depth}-{width} {variant}"
        print(f"{label}, {bits}-bit, batch {batch_size}: step {r['step_ms']:.0f} ms "
              f"(median of {steps} after {warmup} warm-up)")
        print(f"  {'op':<16}{'calls':>6}{'fwd ms':>9}{'bwd ms':>9}{'share':>8}")
        rows = sorted(r["ops"].items(), key=lambda kv: -(kv[1]["fwd_ms"] + kv[1]["bwd_ms"]))
        for name, o in rows:
            share = (o["fwd_ms"] + o["bwd_ms"]) / r["step_ms"]
            print(f"  {name:<16}{o['calls']:>6}{o['fwd_ms']:9.1f}{o['bwd_ms']:9.1f}{100 * share:7.1f}%")
        rest = r["step_ms"] - sum(o["fwd_ms"] + o["bwd_ms"] for o in r["ops"].values())
        print(f"  {'(rest)':<16}{'':>6}{'':>9}{'':>9}{100 * rest / r['step_ms']:7.1f}%   autograd, loss, SGD: "
              f"{rest:.0f} ms", flush=True)
        results[label] = r
    return results
