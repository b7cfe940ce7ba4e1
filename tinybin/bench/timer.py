"""The one timer of every benchmark: the median wall time of a call, in milliseconds."""
from __future__ import annotations

import statistics
import time


def median_ms(fn, repeats=3, warmup=0) -> float:
    """Median of `repeats` timed calls of fn(), after `warmup` untimed ones (compilation, page
    faults); the median, not the mean, so one interruption by another process does not count."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def time_function(cls, add) -> tuple:
    """Wrap an autograd Function's forward and backward so that every call adds its seconds:
    add(cls.__name__, "f" or "b", seconds). Returns what restore_functions() needs to undo it."""
    saved = (cls, cls.__dict__.get("forward"), cls.__dict__.get("backward"))
    forward, backward, name = cls.forward, cls.backward, cls.__name__

    def timed_forward(ctx, *args, **kwargs):
        t = time.perf_counter()
        try:
            return forward(ctx, *args, **kwargs)
        finally:
            add(name, "f", time.perf_counter() - t)

    def timed_backward(ctx, dout):
        t = time.perf_counter()
        try:
            return backward(ctx, dout)
        finally:
            add(name, "b", time.perf_counter() - t)

    cls.forward, cls.backward = staticmethod(timed_forward), staticmethod(timed_backward)
    return saved


def restore_functions(saved):
    """Undo time_function() for each of its results."""
    for cls, forward, backward in saved:
        for name, original in (("forward", forward), ("backward", backward)):
            if original is None:
                delattr(cls, name)          # it was inherited: the class had none of its own
            else:
                setattr(cls, name, original)
