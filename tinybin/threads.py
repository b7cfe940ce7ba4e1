"""Thread settings for the two thread pools that share the cores, applied before NumPy loads.

The matrix products run on OpenBLAS's threads (inside NumPy), the Numba kernels on a pool of
tinybin's own (kernels/workers.py), whose idle threads sleep. By default, a thread of OpenBLAS
that runs out of work keeps spinning for a while, waiting for more: about 2^28 cycles (~0.1 s);
a GNU OpenMP thread (Numba's own pool, which earlier kernels used) similarly. A
convolution alternates products and kernels every few milliseconds, so on a machine with few
cores the idle pool spins on the core the busy pool needs. Measured on 2 cores (`python -m
tinybin bench conv`): with parallel kernels and the default spinning, the kernels gained
nothing over serial ones and the products slowed; with both pools told to sleep at once,
the kernels ran 1.3-2× faster than serial and the products were unchanged.

So `import tinybin` sets, unless already set:

    OPENBLAS_THREAD_TIMEOUT=4     an idle OpenBLAS thread sleeps after 2^4 cycles
    OMP_WAIT_POLICY=PASSIVE       an idle OpenMP thread (Numba's default pool) sleeps at once

OpenBLAS reads its variable once, when NumPy is first imported, and its threads keep the
timeout they started with. If NumPy was imported before tinybin (as most scripts do) and the
variable was not set, `import tinybin` applies it afterwards to the OpenBLAS already loaded,
as threadpoolctl reaches a loaded BLAS through ctypes: `openblas_read_env()` re-reads the
environment and `blas_thread_shutdown_()` stops the threads, which OpenBLAS starts again, with
the new timeout, at its next multi-threaded call (the same shutdown OpenBLAS does itself
before a fork). Where that is impossible (another BLAS, a build without these symbols, not
Linux), tinybin warns once how to get the parallel kernels, and they stay serial
(TINYBIN_PARALLEL=1 forces them parallel anyway): import tinybin before NumPy, or set
OPENBLAS_THREAD_TIMEOUT=4 in the shell.

This module must not import NumPy.
"""
import ctypes
import os
import sys
import warnings

_SET_BEFORE = "OPENBLAS_THREAD_TIMEOUT" in os.environ
_NUMPY_FIRST = "numpy" in sys.modules
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _loaded_openblas():
    """Paths of the OpenBLAS libraries mapped into this process (Linux: /proc/self/maps)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6}
    except OSError:
        return []
    return sorted(p for p in paths if "openblas" in os.path.basename(p).lower())


def _apply_timeout_to_loaded_blas() -> bool:
    """Give the already loaded OpenBLAS the timeout now in the environment; True if it took."""
    wanted = int(os.environ["OPENBLAS_THREAD_TIMEOUT"])
    libraries = _loaded_openblas()
    for path in libraries:
        try:
            lib = ctypes.CDLL(path)                         # already loaded: the same handle
            read_env, shutdown, timeout = lib.openblas_read_env, lib.blas_thread_shutdown_, lib.openblas_thread_timeout
        except (OSError, AttributeError):
            return False
        read_env()                                          # re-read OPENBLAS_* from the environment
        if timeout() != wanted:
            return False
        shutdown()                                          # threads restart with it at the next call
    return bool(libraries)


_BLAS_SLEEPS = _SET_BEFORE or not _NUMPY_FIRST or _apply_timeout_to_loaded_blas()
if not _BLAS_SLEEPS:
    warnings.warn("NumPy was imported before tinybin and its OpenBLAS could not be told to let idle threads "
                  "sleep, so tinybin's Numba kernels run serial (slower on several cores). For full speed, "
                  "import tinybin before numpy, or set OPENBLAS_THREAD_TIMEOUT=4 in the environment.",
                  RuntimeWarning, stacklevel=2)


def blas_threads_sleep() -> bool:
    """True when OpenBLAS was (or will be) loaded with OPENBLAS_THREAD_TIMEOUT set, so its idle
    threads do not spin against Numba's."""
    return _BLAS_SLEEPS
