"""Convolution kernels: im2col / col2im in a fast Numba version and a readable NumPy reference.

`im2col_numba.py` is used by default; `im2col_ref.py` computes the same thing with a few NumPy
slices and is the one to read first. Both have the same signatures and are tested equal.

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

Convolution algorithm. 3×3 stride-1 layers can run as im2col + one GEMM or by Winograd's
F(2×2, 3×3) or F(4×4, 3×3) (winograd_ref.py, tinybin/ops/conv_winograd.py); stride-2, 1×1 and
other layers always use im2col:

    TINYBIN_CONV=im2col|winograd2|winograd4 python ...     # read at import
    kernels.use_conv("im2col")                             # switch from now on
    with kernels.use_conv("winograd2"):                    # ... or only inside a block
        ...

The default is winograd4. `python -m tinybin bench conv` at batch 125, float32, forward +
backward, im2col's time over Winograd's on WRN-20-4's stages 32×32×64, 16×16×128, 8×8×256
(one run each, on a shared 2-core machine at load average 13–17):
    serial (OPENBLAS_NUM_THREADS=1 TINYBIN_PARALLEL=0):  winograd2 1.02, 1.09, 1.41×;
                                                         winograd4 1.27, 1.18, 3.09×
    default threads:                                     winograd2 1.24, 1.22, 1.00×;
                                                         winograd4 1.16, 1.17, 1.18×
F(4×4) gains more and more steadily (1.16–3.09× against 1.00–1.41×); in `python -m tinybin
bench train --conv im2col,winograd4` (same machine, load ~20) a WRN-20-4 srelu training step
took 1.69× less time with it. Its float32 error is larger -- relative RMS error against
the float64 convolution ~1.7e-6 against im2col's ~3e-7 and winograd2's ~2.5e-7 (1-bit weights,
normal inputs; lessons/12_winograd.py shows where it comes from) -- but far below what one
mini-batch changes, and the authors' released model keeps its 96.30 % (963/1000).
Narrow layers lose (WRN-20-1's 32×32×16 stage: 0.55–0.74×; the 3-channel stem more), so
Winograd runs only where input and output have >= min_channels channels (64;
TINYBIN_CONV_MIN_CHANNELS, or use_conv(name, min_channels=...)).

The weight gradient of a Winograd layer is computed by im2col unless dw="winograd"
(TINYBIN_CONV_DW=winograd). Serial, Winograd's dw is the faster (whole conv 1.37, 1.75, 4.73×
im2col's in the run above), but its (m+2)² products each reduce over all tiles (a long inner
dimension, a small C×OC result), and multi-threaded OpenBLAS synchronises its threads many
times in each: with threads on the busy machine the whole conv fell to 0.23–0.57× im2col's.
im2col's dw, one product, is the robust choice.

float64 convolutions keep im2col unless float64=True (TINYBIN_CONV_FLOAT64=1): float64 is what
gradient checks run in, and F(4×4)'s rounding there (~1e-14 relative, against im2col's
~1e-16) makes central differences noisier -- a whole-network check of WRN-8-1 at step 1e-6
measured 2.4e-5 with it against 7.7e-6 with im2col (8.9e-8 and 7.2e-8 at step 1e-4).
Batch norm. Training-mode batch norm (+ the ReLU after it in a BN → ReLU unit) runs as one fused
op (tinybin/ops/norm_act.py) on bn_numba.py, or bn_ref.py under the reference switch above; it
saves only x and two per-channel vectors. TINYBIN_FUSED_BN=0 (read at import) or
use_fused_bn(False) (as use_reference) goes back to ops/norm.py's BN and a separate ReLU op.
"""
import os

import numpy as np

from ..geometry import output_size
from . import bn_ref, direct_ref, im2col_ref, winograd_ref

_use_reference = os.environ.get("TINYBIN_REFERENCE", "0").strip() not in ("", "0")
_workspaces: dict = {}  # dtype -> one flat buffer, grown on demand
CONV_ALGORITHMS = {"im2col": 0, "direct": 0, "winograd2": 2, "winograd4": 4}  # name -> Winograd tile size m
DIRECT_BLOCK, DIRECT_Q = 16, 4  # direct_numba.B and .Q: the channel multiples the direct kernels need
DEFAULT_CONV, DEFAULT_MIN_CHANNELS, DEFAULT_DW = "winograd4", 64, "im2col"  # measured: see above
_fused_bn = os.environ.get("TINYBIN_FUSED_BN", "1").strip() not in ("", "0")
_conv = {"conv": os.environ.get("TINYBIN_CONV", "").strip() or DEFAULT_CONV,       # checked when first used
         "min_channels": os.environ.get("TINYBIN_CONV_MIN_CHANNELS", "").strip() or str(DEFAULT_MIN_CHANNELS),
         "dw": os.environ.get("TINYBIN_CONV_DW", "").strip() or DEFAULT_DW,
         "float64": os.environ.get("TINYBIN_CONV_FLOAT64", "0").strip() not in ("", "0")}


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


class use_conv:
    """use_conv(name, min_channels=64, dw="im2col", float64=False) selects the algorithm of 3×3
    stride-1 convolutions (name in CONV_ALGORITHMS), the fewest input and output channels a layer
    needs to run by Winograd, how such a layer computes its weight gradient ("im2col" or
    "winograd"), and whether float64 convolutions run by Winograd too (by default they keep
    im2col, see above). Takes effect at once; used as a context manager it restores the
    previous choice."""

    def __init__(self, name: str, min_channels: int = DEFAULT_MIN_CHANNELS, dw: str = DEFAULT_DW,
                 float64: bool = False):
        global _conv
        new = {"conv": name, "min_channels": str(min_channels), "dw": dw, "float64": bool(float64)}
        _check_conv(new, "use_conv")
        self.previous, _conv = _conv, new

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _conv
        _conv = self.previous
        return False


def _check_conv(settings, source):
    if settings["conv"] not in CONV_ALGORITHMS:
        raise ValueError(f"{source}: unknown convolution algorithm {settings['conv']!r}; "
                         f"known: {', '.join(CONV_ALGORITHMS)}")
    if not settings["min_channels"].isdigit():
        raise ValueError(f"{source}: min_channels must be an int >= 0, got {settings['min_channels']!r}")
    if settings["dw"] not in ("im2col", "winograd"):
        raise ValueError(f"{source}: dw must be 'im2col' or 'winograd', got {settings['dw']!r}")


def _settings():
    _check_conv(_conv, "TINYBIN_CONV / TINYBIN_CONV_MIN_CHANNELS / TINYBIN_CONV_DW")
    return _conv


def conv_algorithm() -> str:
    """The name of the selected convolution algorithm ("im2col", "winograd2" or "winograd4")."""
    return _settings()["conv"]


def conv_min_channels() -> int:
    """Winograd runs layers with at least this many input and output channels."""
    return int(_settings()["min_channels"])


def winograd_weight_gradient() -> bool:
    """True when layers run by Winograd compute their weight gradient by Winograd too."""
    return _settings()["dw"] == "winograd"


def winograd_tile(w_shape, stride, padding, dtype=np.float32) -> int:
    """The Winograd tile size m (2 or 4) for this layer, or 0 for im2col: Winograd runs 3×3,
    stride-1 layers with every pad <= 2 (the input gradient's padding is 2 - pad), at least
    min_channels input and output channels, in float32 (float64 too if asked)."""
    m = CONV_ALGORITHMS[conv_algorithm()]
    if (m and tuple(w_shape[:2]) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2
            and min(w_shape[2:]) >= conv_min_channels() and (dtype == np.float32 or _conv["float64"])):
        return m
    return 0


def direct_passes(w_shape, stride, padding, dtype=np.float32) -> tuple:
    """(forward, dx, dw): which passes of this layer the direct kernels run (direct_numba.py).

    Stride-1 layers that Winograd does not take, unless the algorithm is "im2col", with C_out a
    multiple of DIRECT_BLOCK; dx (the forward kernel run backwards) also needs C_in a multiple
    of it and every pad < the kernel size; dw needs C_in a multiple of DIRECT_Q."""
    KH, KW, C, OC = w_shape
    PT, PB, PL, PR = padding
    if (conv_algorithm() == "im2col" or tuple(stride) != (1, 1) or OC % DIRECT_BLOCK
            or winograd_tile(w_shape, stride, padding, dtype)):
        return False, False, False
    return True, C % DIRECT_BLOCK == 0 and max(PT, PB) < KH and max(PL, PR) < KW, C % DIRECT_Q == 0


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
