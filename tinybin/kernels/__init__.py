"""The kernels, each in a fast Numba version (*_numba.py) and a readable NumPy reference (*_ref.py).

im2col / col2im, the direct convolution, Winograd's transforms and batch norm each come as a pair
with the same signatures, tested equal; read the reference first. The Numba versions are used
by default.

Settings (config.py): one object, read from the TINYBIN_* variables on first use, changed by
one call that also works as a context manager:

    TINYBIN_REFERENCE=1 python ...                  # the NumPy reference everywhere

    from tinybin import kernels
    kernels.settings(reference=True)                # from now on
    with kernels.settings(reference=True, parallel=False):   # ... or only inside a block
        ...
    kernels.current().conv                          # ('winograd4', 'direct', 'im2col')

To step through the Numba loops in a debugger, run with NUMBA_DISABLE_JIT=1: they then execute
as ordinary (slow) Python, and a training step still runs (tests/test_no_jit.py).

Workspace (columns.py). The column matrix is large; `im2col` writes into one buffer per dtype
that every conv layer shares, valid until the next kernel call.

Threads. The matrix products run on OpenBLAS's threads, the Numba kernels on a small pool of
tinybin's (workers.py: NUMBA_NUM_THREADS threads, the Numba kernels compiled with nogil) when
the `parallel` setting is on (by default when OpenBLAS was told to let idle threads sleep; see
`tinybin/threads.py` for why that matters on a machine with few cores). TINYBIN_PARALLEL=0
keeps the kernels on the calling thread; to limit OpenBLAS itself, set OPENBLAS_NUM_THREADS
before Python starts.

Compilation. Each Numba kernel compiles on its first call, once per machine (then Numba's cache
loads it). On a new machine with a core free, warm.py starts a second process at the beginning
of a run that compiles the kernels from the step's last one back while the step compiles them
from its first.

Element-wise and pooling kernels. The activations (pointwise_numba.py) and the average pool
(pool_numba.py) also have Numba versions, used unless the reference setting is on; their
readable versions are the NumPy lines in tinybin/ops/activations.py and ops/pool.py. Unlike the
convolution kernels they give bit-for-bit the NumPy results (same operations in the same
order), so switching changes no number of a training run.

Convolution algorithm. Which layers run by im2col, by the direct kernels or by Winograd is one
table, conv_algorithms.py, with the measurements behind the defaults; `conv_plan` gives a
layer its passes.

Batch norm. Training-mode batch norm (+ the ReLU after it in a BN → ReLU unit) runs as one fused
op (tinybin/ops/norm_act.py) on bn_numba.py, or bn_ref.py (ops/norm.py's formula and the ReLU
mask) under the reference setting; it saves only x and two per-channel vectors. fused_bn=False
(TINYBIN_FUSED_BN=0) goes back to ops/norm.py's BN and a separate ReLU op.
"""
from .config import wide_vectors

wide_vectors()   # before any kernel compiles (config.py: "Vector width")

from .columns import clear_workspaces, col2im, im2col, workspace  # noqa: E402
from .config import Settings, current, implementation, settings  # noqa: E402
from .conv_algorithms import ALGORITHMS, ConvPlan  # noqa: E402
from .conv_algorithms import plan as conv_plan  # noqa: E402

__all__ = ["Settings", "settings", "current", "implementation", "conv_plan", "ConvPlan", "ALGORITHMS",
           "im2col", "col2im", "workspace", "clear_workspaces", "pointwise", "pooling", "use_reference", "use_conv"]


def pointwise():
    """The activation kernels of pointwise_numba, or None under the reference setting: the ops
    then run their NumPy expressions (which give the same bits)."""
    if current().reference:
        return None
    from . import pointwise_numba
    return pointwise_numba


def pooling():
    """The average-pool kernels of pool_numba, or None under the reference setting (same bits)."""
    if current().reference:
        return None
    from . import pool_numba
    return pool_numba


# ----- the names of earlier releases, kept for scripts that use them -----------------------------
def use_reference(flag: bool = True) -> settings:
    """settings(reference=flag)."""
    return settings(reference=bool(flag))


def use_conv(name: str, min_channels: int = Settings.winograd_min_channels,
             dw: str = Settings.winograd_weight_gradient, float64: bool = Settings.winograd_float64) -> settings:
    """settings(conv=name, winograd_min_channels=min_channels, winograd_weight_gradient=dw,
    winograd_float64=float64): `name` (or "a+b") then im2col."""
    return settings(conv=name, winograd_min_channels=min_channels, winograd_weight_gradient=dw,
                    winograd_float64=float64)
