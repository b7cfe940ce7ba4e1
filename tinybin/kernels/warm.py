"""The kernels a training step compiles, with their signatures, and a second process that
compiles some of them while the first step compiles the others.

A new machine (an empty Numba cache) compiles every kernel once, on its first call, and Numba
compiles one function at a time. On several cores `helper()` starts one more process at the
beginning of a run, which compiles the kernels the step needs last (HELPER: the backward
passes', and Winograd's output transform) into the cache while the step compiles the ones it
needs first; when the step reaches one of them, Numba loads it from the cache instead of
compiling it (or compiles it itself, if the helper is not done: never wrong, only slower). The
helper starts only when the `parallel` setting is on (the run may use the cores) and the
cache lacks the last of its kernels. `python -m tinybin.kernels.warm [all]` compiles HELPER
(or every kernel) in this process.

SIGNATURES are those of training in float32; tests/test_workers.py checks that a step compiles
exactly these.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numba
from numba import types

from .config import current

_ARGUMENTS = {"i": types.int64, "b": types.boolean, "s": types.float32}

# module.kernel: its arguments (fN: a C-contiguous float32 array of N dimensions, dN: float64,
# s: a float32 scalar, i: an int64, b: a bool), in the order a training step first calls them
SIGNATURES = {
    "bn_numba._stats": "f2 i d2 d2 i i",
    "bn_numba._forward": "f2 f2 f1 f1 f1 b i i i",
    "direct_numba._pad_images": "f4 f4 i i i i",
    "direct_numba._forward_rows": "f4 f5 f4 i i",
    "pointwise_numba._clamp_below": "f1 s f1 i i",
    "im2col_numba._im2col_rows": "f4 f2" + " i" * 10,
    "pool_numba._forward_rows": "f4 f2 f4" + " i" * 8,
    "winograd_numba._gather_rows": "f4 f3 f2" + " i" * 8,
    "winograd_numba._output_rows": "f3 f4 f2" + " i" * 5,
    "bn_numba._backward_sums": "f2 f2 f1 f1 f1 f1 b i d2 d2 i i",
    "bn_numba._backward_dx": "f2 f2 f2 f1 f1 f1 f1 b f1 f1 i i i",
    "pointwise_numba._pass_above": "f1 f1 s s s f1 i i",
    "pool_numba._backward_rows": "f4 f4" + " i" * 8,
    "im2col_numba._col2im_images": "f2 f4" + " i" * 10,
    "direct_numba._weights_chunks": "f4 f5 f5 i i i i",
}
HELPER = ["winograd_numba._output_rows", "bn_numba._backward_sums", "bn_numba._backward_dx",
          "pointwise_numba._pass_above", "pool_numba._backward_rows", "im2col_numba._col2im_images",
          "direct_numba._weights_chunks"]


def signature(spec: str) -> tuple:
    def argument(code):
        if code[0] in "fd":
            return types.Array(types.float32 if code[0] == "f" else types.float64, int(code[1:]), "C")
        return _ARGUMENTS[code]
    return tuple(argument(code) for code in spec.split())


def kernel(name: str):
    module, function = name.split(".")
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def compile_kernels(names):
    """Compile (or load from the cache) each named kernel for its signature."""
    for name in names:
        kernel(name).compile(signature(SIGNATURES[name]))


def _cached(name) -> bool:
    """Whether the cache holds an index for this kernel (Numba's cache layout; True if unknown)."""
    try:
        return os.path.exists(kernel(name)._cache._cache_file._index_path)
    except Exception:         # another Numba's internals: assume cached, start nothing
        return True


_helper = None   # the process started, kept so that it is not reported as abandoned


def helper():
    """Start the compiling process when it can help (see above); returns it, or None."""
    global _helper
    if (numba.config.DISABLE_JIT or current().reference or not current().parallel
            or numba.config.NUMBA_NUM_THREADS < 2 or _cached(HELPER[-1])):
        return None
    _helper = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return _helper


if __name__ == "__main__":
    compile_kernels(list(SIGNATURES) if sys.argv[1:] == ["all"] else HELPER)
