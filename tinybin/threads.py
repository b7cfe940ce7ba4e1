"""Thread settings for the two thread pools that share the cores, applied before NumPy loads.

The matrix products run on OpenBLAS's threads (inside NumPy), im2col / col2im on Numba's. By
default, a thread of either pool that runs out of work keeps spinning for a while, waiting for
more: an OpenBLAS thread for about 2^28 cycles (~0.1 s), a GNU OpenMP thread similarly. A
convolution alternates products and kernels every few milliseconds, so on a machine with few
cores the idle pool spins on the core the busy pool needs. Measured on 2 cores (`python -m
tinybin bench conv`): with parallel kernels and the default spinning, the kernels gained
nothing over serial ones and the products slowed; with both pools told to sleep at once,
the kernels ran 1.3-2× faster than serial and the products were unchanged.

So `import tinybin` sets, unless already set:

    OPENBLAS_THREAD_TIMEOUT=4     an idle OpenBLAS thread sleeps after 2^4 cycles
    OMP_WAIT_POLICY=PASSIVE       an idle OpenMP thread (Numba's default pool) sleeps at once

OpenBLAS reads its variable once, when NumPy is first imported. If NumPy was imported before
tinybin and the variable was not set, it comes too late: `blas_threads_sleep()` then says so,
and the kernels stay serial (TINYBIN_PARALLEL=1 forces them parallel anyway). To have it
either way, import tinybin before NumPy, or set the variables in the shell.

This module must not import NumPy.
"""
import os
import sys

_BLAS_SLEEPS = "OPENBLAS_THREAD_TIMEOUT" in os.environ or "numpy" not in sys.modules
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def blas_threads_sleep() -> bool:
    """True when OpenBLAS was (or will be) loaded with OPENBLAS_THREAD_TIMEOUT set, so its idle
    threads do not spin against Numba's."""
    return _BLAS_SLEEPS
