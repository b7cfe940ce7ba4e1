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
