"""How a kernel's work is shared among threads: `split(kernel, units, *args)`.

Every Numba kernel is one function, compiled once per dtype, that does a range of units of its
work, `kernel(*args, lo, hi)`: output rows, images, chunks of a sum, elements. Each unit writes
its own part of the output (a chunk of a sum its own partial sum, added in chunk order
afterwards), so the result does not depend on how the units are split.

`split` runs it on the calling thread when the `parallel` setting is off (kernels/config.py),
and otherwise cuts the units into NUMBA_NUM_THREADS contiguous, equal parts (the static
schedule of Numba's prange), one per thread: the calling thread does the first, a pool of
plain Python threads the others. The kernels are compiled with nogil=True, so those threads
run them at the same time; an idle one sleeps on its queue and never spins against OpenBLAS.

Why not Numba's own prange (parallel=True): compile time on a new machine. A prange loop goes
through Numba's parfor passes and is compiled again as a gufunc, and the loop body it calls is
compiled twice, for an int64 and a uint64 index. Measured on WRN-20-1's first training step
(empty cache, load average 2-3): 46 s of compilation with prange drivers, 16 s as one function
per kernel. The pool costs nothing to compile; warm training steps took the same time.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba

from .config import current

_pool = None   # (pid, executor); a forked child, whose copy has no threads, makes its own


def threads() -> int:
    """How many threads a parallel kernel runs on (Numba's NUMBA_NUM_THREADS: the cores by default)."""
    return max(1, numba.config.NUMBA_NUM_THREADS)


def _executor():
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(threads() - 1, thread_name_prefix="tinybin-kernel"))
    return _pool[1]


def split(kernel, units, *args):
    """kernel(*args, lo, hi) over the units 0 .. units-1: all at once on this thread when the
    `parallel` setting is off, else in contiguous parts, one per thread."""
    parts = min(threads(), units) if current().parallel else 1
    if parts <= 1:
        kernel(*args, 0, units)
        return
    bounds = [units * p // parts for p in range(parts + 1)]
    others = [_executor().submit(kernel, *args, bounds[p], bounds[p + 1]) for p in range(1, parts)]
    try:
        kernel(*args, bounds[0], bounds[1])
    finally:
        for future in others:
            future.result()
