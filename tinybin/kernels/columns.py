"""The shared workspace and the column matrix of im2col: im2col(x) into it, col2im back.

The column matrix is large (N*OH*OW rows of KH*KW*C values: 295 MB for a 3×3, 64-channel conv
on 125 images of 32×32 in float32), and allocating it afresh on every call costs more than
filling it, because every new page faults. So `im2col` writes into one buffer per dtype that
is kept and grown to the largest size asked for; every conv layer shares it. The rule that
makes sharing safe: the columns are valid only until the next kernel call. Nothing may keep
them: a layer's backward recomputes im2col from its saved input instead of storing columns
(storing them for every layer would take ~3 GB for WRN-20-4 at batch 125; recomputing costs a
few percent). How large it may grow is bounded by conv_algorithms.WORKSPACE_LIMIT: a larger
batch runs in groups of images.
"""
import numpy as np

from ..geometry import output_size
from .config import implementation

_workspaces: dict = {}  # dtype -> one flat buffer, grown on demand


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
    return implementation("im2col").im2col(np.ascontiguousarray(x), cols, KH, KW, SH, SW, PT, PB, PL, PR)


def col2im(cols, x_shape, KH, KW, stride, padding) -> np.ndarray:
    """A new dx of x_shape (N, H, W, C): each cell the sum of the column entries copied from it."""
    (SH, SW), (PT, PB, PL, PR) = stride, padding
    dx = np.empty(x_shape, cols.dtype)
    return implementation("im2col").col2im(np.ascontiguousarray(cols), dx, KH, KW, SH, SW, PT, PB, PL, PR)
