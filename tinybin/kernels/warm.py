"""The kernels a training step compiles, with their signatures, and a second process that
compiles them from the other end while the first step compiles them in the order it needs them.

A new machine (an empty Numba cache) compiles every kernel once, on its first call, and Numba
compiles one function at a time, on one core: about 10 s of WRN-20-1's first step. When
another core is free, `helper()` starts one more process at the beginning of a run, which
compiles SIGNATURES from the last to the first (the weight gradient first) into the cache
while the step compiles its kernels from the first. When the step reaches a kernel the helper
has done, Numba loads it from the cache instead of compiling it; one the helper is still
working on, the step compiles itself: never wrong, at most one kernel's time slower. The two
meet near the middle, whatever the model uses; past that point the helper only loads what the
step has already written.

It starts only when it can help: the `parallel` setting is on (the run may use the cores), the
cache lacks the step's last kernel, and the 1-minute load average leaves a core free. On a busy
machine a second compiler takes the core the first one needs (measured on 2 cores at load
average 3: first step 12.4 s with it, 10.8 s without), so then it stays away.

`python -m tinybin.kernels.warm [MODULE.KERNEL ...]` compiles every kernel (or those named) in
this process, last first.
SIGNATURES are those of training in float32, in the order a step first calls them;
tests/test_workers.py checks that WRN-20-1 steps compile exactly these.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numba
from numba import types

from .config import current

_SCALARS = {"i": types.int64, "b": types.boolean, "s": types.float32}

# module.kernel: its arguments (fN: a C-contiguous float32 array of N dimensions, dN: float64,
# s: a float32 scalar, i: an int64, b: a bool)
SIGNATURES = {
    "bn_numba._stats": "f2 i d2 d2 i i",
    "bn_numba._forward": "f2 f2 f1 f1 f1 b i i i",
    "pointwise_numba._clamp_below": "f1 s f1 i i",
    "direct_numba._pad_images": "f4 f4 i i i i",
    "direct_numba._forward_rows": "f3 f4 f4 i i i f4 s i i",
    "im2col_numba._im2col_rows": "f4 f2" + " i" * 10,
    "pool_numba._forward_rows": "f4 f2 f4" + " i" * 8,
    "winograd_numba._gather_rows": "f4 f3 f2" + " i" * 8,
    "winograd_numba._output_rows": "f3 f4 f2" + " i" * 5,
    "pointwise_numba._pass_above": "f1 f1 s s s f1 i i",
    "bn_numba._backward_sums": "f2 f2 f1 f1 f1 f1 b i d2 d2 i i",
    "bn_numba._backward_dx": "f2 f2 f2 f1 f1 f1 f1 b f1 f1 i i i",
    "im2col_numba._col2im_images": "f2 f4" + " i" * 10,
    "winograd_numba._tile_products": "f2 f2 f4 i i i",
    "pool_numba._backward_rows": "f4 f4" + " i" * 8,
    "direct_numba._weights_chunks": "f3 f3 f5 i i i i i i",
    "direct_numba._weights_chunks_padded": "f3 f3 f4 i i i i i",
}
LAST = list(SIGNATURES)[-1]


def signature(spec: str) -> tuple:
    def argument(code):
        if code[0] in "fd":
            return types.Array(types.float32 if code[0] == "f" else types.float64, int(code[1:]), "C")
        return _SCALARS[code]
    return tuple(argument(code) for code in spec.split())


def kernel(name: str):
    module, function = name.split(".")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def compile_kernels(names):
    """Compile (or load from the cache) each named kernel for its signature."""
    for name in names:
        kernel(name).compile(signature(SIGNATURES[name]))


def cached(name) -> bool:
    """Whether the cache holds an index for this kernel (Numba's cache layout; True if unknown)."""
    try:
        return os.path.exists(kernel(name)._cache._cache_file._index_path)
    except Exception:         # another Numba's internals: assume cached, start nothing
        return True


def core_free() -> bool:
    """Whether the 1-minute load average leaves one of Numba's cores idle at least half the time."""
    try:
        return os.getloadavg()[0] < numba.config.NUMBA_NUM_THREADS - 0.5
    except OSError:            # no load average on this system: assume busy
        return False


_helper = None   # the process started, kept so that it is not reported as abandoned


def helper():
    """Start the compiling process when it can help (see above); returns it, or None."""
    global _helper
    if (numba.config.DISABLE_JIT or current().reference or not current().parallel
            or numba.config.NUMBA_NUM_THREADS < 2 or cached(LAST) or not core_free()):
        return None
    _helper = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _helper


if __name__ == "__main__":
    compile_kernels(reversed(sys.argv[1:] or list(SIGNATURES)))
