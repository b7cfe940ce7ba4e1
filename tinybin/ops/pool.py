"""Average pooling (padding excluded from the average) and global average pooling, NHWC."""
import numpy as np

from .. import kernels
from ..geometry import as_padding, as_pair, output_size, window_counts
from ..tensor import Function


def avg_pool2d_forward(x, size=3, stride=2, padding=1):
    """out[n, oh, ow, c] = (1 / count[oh, ow]) * sum of x[n, h, w, c] over the real cells (h, w)
    of window (oh, ow), i.e. h = oh*SH + i - PT in [0, H), w = ow*SW + j - PL in [0, W).

    Padded cells are left out of the sum *and* of the count, so a border output is the mean of
    the cells that exist (TensorFlow's "same" average pooling). With padding (0, 1, 0, 1) this
    is the paper's shortcut pool on a 32×32 map: 3×3, stride 2, TensorFlow "same".

    Computed as sum over the KH×KW window offsets of one strided slice of the zero-padded x
    (the padding zeros add nothing), then divided by count.

    Shapes: x (N, H, W, C), size int or (KH, KW), stride int or (SH, SW), padding int or
    (PT, PB, PL, PR) -> out (N, OH, OW, C).
    Reference: McDonnell et al. 2019 (arXiv:1907.06916), downsampling shortcut.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"avg_pool2d needs x of shape (N, H, W, C), got {x.shape}")
    (KH, KW), (SH, SW) = as_pair(size, "size"), as_pair(stride, "stride")
    PT, PB, PL, PR = pads = as_padding(padding)
    N, H, W, C = x.shape
    OH, OW = output_size(H, W, KH, KW, SH, SW, PT, PB, PL, PR)
    count = window_counts(H, W, KH, KW, SH, SW, *pads)              # OH, OW
    if OH < 1 or OW < 1 or count.min() < 1:
        raise ValueError(f"avg_pool2d: window {KH}x{KW} with stride {(SH, SW)} and padding {pads} does not "
                         f"fit input x {x.shape} (every window needs at least one real cell)")
    cache = (x.shape, (KH, KW), (SH, SW), pads, count)
    impl = kernels.pooling()                                        # Numba, the same bits (kernels/pool_numba.py)
    if impl is not None:
        return impl.avg_pool_forward(x, count, KH, KW, SH, SW, PT, PL, OH, OW), cache
    xp = np.zeros((N, H + PT + PB, W + PL + PR, C), x.dtype)       # N, H+PT+PB, W+PL+PR, C
    xp[:, PT:PT + H, PL:PL + W, :] = x                              # (np.pad is several times slower)
    out = np.zeros((N, OH, OW, C), x.dtype)                         # N, OH, OW, C
    for i in range(KH):
        for j in range(KW):
            out += xp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :]     # N, OH, OW, C
    out /= count[:, :, None].astype(x.dtype)                        # N, OH, OW, C
    return out, cache


def avg_pool2d_backward(dout, cache):
    """dx[n, h, w, c] = sum over the windows (oh, ow) that contain real cell (h, w) of
    dout[n, oh, ow, c] / count[oh, ow]

    Each output is a plain average of count[oh, ow] cells, so each of those cells receives
    1/count of its gradient; a cell in several overlapping windows adds them all up.
    Shapes: dout (N, OH, OW, C) -> dx (N, H, W, C).
    """
    (N, H, W, C), (KH, KW), (SH, SW), (PT, PB, PL, PR), count = cache
    OH, OW = count.shape
    g = dout / count[:, :, None].astype(dout.dtype)                 # N, OH, OW, C
    impl = kernels.pooling()                                        # Numba, the same bits
    if impl is not None:
        return impl.avg_pool_backward(g, (N, H, W, C), KH, KW, SH, SW, PT, PL)
    dxp = np.zeros((N, H + PT + PB, W + PL + PR, C), dout.dtype)   # N, H+PT+PB, W+PL+PR, C
    for i in range(KH):
        for j in range(KW):
            dxp[:, i:i + SH * OH:SH, j:j + SW * OW:SW, :] += g      # overlapping windows add
    return np.ascontiguousarray(dxp[:, PT:PT + H, PL:PL + W, :])    # N, H, W, C


def global_avg_pool_forward(x):
    """out[n, c] = (1 / (H*W)) * sum_{h, w} x[n, h, w, c].   Shapes: x (N, H, W, C) -> out (N, C)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool needs x of shape (N, H, W, C), got {x.shape}")
    return x.mean(axis=(1, 2)), x.shape


def global_avg_pool_backward(dout, x_shape):
    """dx[n, h, w, c] = dout[n, c] / (H*W): every cell contributed 1/(H*W) to its channel's mean.
    Shapes: dout (N, C) -> dx (N, H, W, C)."""
    N, H, W, C = x_shape
    dx = np.empty(x_shape, dout.dtype)                              # N, H, W, C
    dx[...] = (dout / (H * W))[:, None, None, :]                    # N, 1, 1, C broadcast
    return dx


AvgPool2d = Function.from_pair("AvgPool2d", avg_pool2d_forward, avg_pool2d_backward)
GlobalAvgPool = Function.from_pair("GlobalAvgPool", global_avg_pool_forward, global_avg_pool_backward)


def avg_pool2d(x, size=3, stride=2, padding=1):
    """Average pooling, NHWC; padded cells are excluded from each average."""
    return AvgPool2d.apply(x, size=size, stride=stride, padding=padding)


def global_avg_pool(x):
    """(N, H, W, C) -> (N, C): the mean over each channel's map."""
    return GlobalAvgPool.apply(x)
