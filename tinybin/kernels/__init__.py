"""The kernels, each in a fast Numba version (*_numba.py) and a readable NumPy reference (*_ref.py).

im2col / col2im, the direct convolution, Winograd's transforms and batch norm each come as a pair
with the same signatures, tested equal; read the reference first. `im2col_numba.py` is used by
default; `im2col_ref.py` computes the same thing with a few NumPy slices.

Choosing the implementation:

    TINYBIN_REFERENCE=1 python ...          # the NumPy reference everywhere (read at import)

    from tinybin import kernels
    kernels.use_reference(True)             # switch from now on
    with kernels.use_reference(True):       # ... or only inside a block
        ...

To step through the Numba loops in a debugger, run with NUMBA_DISABLE_JIT=1: they then execute
as ordinary (slow) Python.

Workspace. The column matrix is large (N*OH*OW rows of KH*KW*C values: 295 MB for a 3×3,
64-channel conv on 125 images of 32×32 in float32), and allocating it afresh on every call
costs more than filling it, because every new page faults. So `im2col` writes into one
buffer per dtype that is kept and grown to the largest size asked for; every conv layer
shares it. The rule that makes sharing safe: the columns are valid only until the next
kernel call. Nothing may keep them: a layer's backward recomputes im2col from its saved input
instead of storing columns (storing them for every layer would take ~3 GB for WRN-20-4 at
batch 125; recomputing costs a few percent).

Threads. The matrix products run on OpenBLAS's threads, the Numba kernels on Numba's
(`im2col_numba.PARALLEL`, by default on when both pools were told to sleep when idle; see
`tinybin/threads.py` for why that matters on a machine with few cores). TINYBIN_PARALLEL=0
keeps the kernels serial; to limit OpenBLAS itself, set OPENBLAS_NUM_THREADS before Python
starts.

Element-wise and pooling kernels. The activations (pointwise_numba.py) and the average pool
(pool_numba.py) also have Numba versions, used unless the reference switch is on; their
readable versions are the NumPy lines in tinybin/ops/activations.py and ops/pool.py. Unlike the
convolution kernels they give bit-for-bit the NumPy results (same operations in the same
order), so switching changes no number of a training run.

Convolution algorithm. Which layers run by im2col, by the direct kernels (direct_ref.py,
direct_numba.py) or by Winograd (winograd_ref.py) is chosen in conv_algorithms.py, with the
measurements behind the defaults; its names are re-exported here (use_conv, conv_algorithm,
winograd_tile, direct_passes, ...).

Batch norm. Training-mode batch norm (+ the ReLU after it in a BN → ReLU unit) runs as one fused
op (tinybin/ops/norm_act.py) on bn_numba.py, or bn_ref.py under the reference switch above; it
saves only x and two per-channel vectors. TINYBIN_FUSED_BN=0 (read at import) or
use_fused_bn(False) (as use_reference) goes back to ops/norm.py's BN and a separate ReLU op.
"""
import os

import numpy as np

from ..geometry import output_size
from . import bn_ref, direct_ref, im2col_ref, winograd_ref
from .conv_algorithms import (  # noqa: F401
    CONV_ALGORITHMS,
    DEFAULT_CONV,
    DEFAULT_DW,
    DEFAULT_MIN_CHANNELS,
    DIRECT_BLOCK,
    DIRECT_Q,
    conv_algorithm,
    conv_min_channels,
    direct_passes,
    use_conv,
    winograd_tile,
    winograd_weight_gradient,
)

_use_reference = os.environ.get("TINYBIN_REFERENCE", "0").strip() not in ("", "0")
_workspaces: dict = {}  # dtype -> one flat buffer, grown on demand
_fused_bn = os.environ.get("TINYBIN_FUSED_BN", "1").strip() not in ("", "0")
class use_reference:
    """use_reference(True) selects the NumPy reference kernels, use_reference(False) the Numba
    ones. Takes effect at once; used as a context manager it restores the previous choice."""

    def __init__(self, flag: bool = True):
        global _use_reference
        self.previous = _use_reference
        _use_reference = bool(flag)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _use_reference
        _use_reference = self.previous
        return False


def using_reference() -> bool:
    """True when the NumPy reference kernels are selected."""
    return _use_reference


class use_fused_bn:
    """use_fused_bn(True) runs training batch norm (+ ReLU) as one fused op, use_fused_bn(False) as
    ops/norm.py's BN then a ReLU op. Takes effect at once; as a context manager it restores."""

    def __init__(self, flag: bool = True):
        global _fused_bn
        self.previous, _fused_bn = _fused_bn, bool(flag)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _fused_bn
        _fused_bn = self.previous
        return False


def fused_bn() -> bool:
    """True when training batch norm (+ ReLU) runs as one fused op."""
    return _fused_bn


def bn_implementation():
    """The fused batch-norm kernel module in use: bn_ref or bn_numba (as implementation())."""
    if _use_reference:
        return bn_ref
    from . import bn_numba
    return bn_numba


def direct_implementation():
    """The direct convolution module in use: direct_ref or direct_numba (as implementation())."""
    if _use_reference:
        return direct_ref
    from . import direct_numba
    return direct_numba


def winograd_implementation():
    """The Winograd transform module in use: winograd_ref or winograd_numba (as implementation())."""
    if _use_reference:
        return winograd_ref
    from . import winograd_numba
    return winograd_numba


def pointwise():
    """The activation kernels of pointwise_numba, or None under the
    reference switch: the ops then run their NumPy expressions (which give the same bits)."""
    if _use_reference:
        return None
    from . import pointwise_numba
    return pointwise_numba


def pooling():
    """The average-pool kernels of pool_numba, or None under the reference switch (same bits)."""
    if _use_reference:
        return None
    from . import pool_numba
    return pool_numba


def implementation():
    """The kernel module in use: im2col_ref or im2col_numba (imported, not compiled, on first use)."""
    if _use_reference:
        return im2col_ref
    from . import im2col_numba
    return im2col_numba


def workspace(shape, dtype) -> np.ndarray:
    """An uninitialised array of `shape` in the shared buffer for `dtype`. Valid until the next
    call: the next caller gets the same memory."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    buf = _workspaces.get(dtype)
    if buf is None or buf.size < size:
        _workspaces.pop(dtype, None)  # release the old buffer before taking a larger one
        buf = _workspaces[dtype] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def clear_workspaces():
    """Release the shared buffers (they are re-created on the next call)."""
    _workspaces.clear()


def im2col(x, KH, KW, stride, padding) -> np.ndarray:
    """Columns (N*OH*OW, KH*KW*C) of x (N, H, W, C), written into the shared workspace.

    stride = (SH, SW), padding = (PT, PB, PL, PR). The result is valid until the next kernel call.
    """
    (SH, SW), (PT, PB, PL, PR) = stride, padding
    N, H, W, C = x.shape
    OH, OW = output_size(H, W, KH, KW, SH, SW, PT, PB, PL, PR)
    cols = workspace((N * OH * OW, KH * KW * C), x.dtype)
    return implementation().im2col(np.ascontiguousarray(x), cols, KH, KW, SH, SW, PT, PB, PL, PR)


def col2im(cols, x_shape, KH, KW, stride, padding) -> np.ndarray:
    """A new dx of x_shape (N, H, W, C): each cell the sum of the column entries copied from it."""
    (SH, SW), (PT, PB, PL, PR) = stride, padding
    dx = np.empty(x_shape, cols.dtype)
    return implementation().col2im(np.ascontiguousarray(cols), dx, KH, KW, SH, SW, PT, PB, PL, PR)
