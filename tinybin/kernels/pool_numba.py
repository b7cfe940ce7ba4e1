"""Fast average pooling (padding excluded from the average), NHWC, compiled by Numba.

The readable version is tinybin/ops/pool.py's NumPy forward and backward, which call these when
the reference setting is off. They give the same bits: the NumPy version adds the KH×KW strided
slices of the zero-padded input one window offset (i, j) at a time, so every output is
((0 + x[i=0, j=0]) + x[0, 1]) + ... in that order, padding zeros included, then divided by its
count; the loops below add in the same order, zeros included (0.0 + -0.0 is +0.0, so even the
sign of a zero agrees). The backward gathers, for each input cell, the gradients of the windows
that contain it in the same (i, j) order as the NumPy version's scatter adds them.

What they save: the padded copy of the input (and of the gradient), the KH·KW passes over the
output, and the single core: one unit of parallel work is one output row (n, oh), or one input
row (n, h) in the backward, each written by one thread only.
"""
import numpy as np
from numba import njit

from .workers import split


@njit(cache=True, nogil=True)
def _forward_rows(x, count, out, KH, KW, SH, SW, PT, PL, lo, hi):
    """Output rows r = n*OH + oh, lo <= r < hi."""
    N, H, W, C = x.shape
    OH, OW = out.shape[1], out.shape[2]
    zero = x.dtype.type(0)
    for r in range(lo, hi):
        n = r // OH
        oh = r - n * OH
        for ow in range(OW):
            for c in range(C):
                out[n, oh, ow, c] = zero
            for i in range(KH):
                h = oh * SH - PT + i
                for j in range(KW):
                    w = ow * SW - PL + j
                    if 0 <= h < H and 0 <= w < W:
                        for c in range(C):
                            out[n, oh, ow, c] += x[n, h, w, c]
                    else:                               # a padding cell adds its zero, as in NumPy
                        for c in range(C):
                            out[n, oh, ow, c] += zero
            d = count[oh, ow]
            for c in range(C):
                out[n, oh, ow, c] /= d


@njit(cache=True, nogil=True)
def _backward_rows(g, dx, KH, KW, SH, SW, PT, PL, lo, hi):
    """dx rows r = n*H + h, lo <= r < hi: each cell the sum of g over the windows that contain it."""
    N, H, W, C = dx.shape
    OH, OW = g.shape[1], g.shape[2]
    for r in range(lo, hi):
        n = r // H
        h = r - n * H
        for w in range(W):
            for c in range(C):
                dx[n, h, w, c] = 0
            for i in range(KH):
                a = h + PT - i                          # oh * SH, if this window exists
                if a < 0 or a % SH != 0 or a // SH >= OH:
                    continue
                oh = a // SH
                for j in range(KW):
                    b = w + PL - j
                    if b < 0 or b % SW != 0 or b // SW >= OW:
                        continue
                    ow = b // SW
                    for c in range(C):
                        dx[n, h, w, c] += g[n, oh, ow, c]


def avg_pool_forward(x, count, KH, KW, SH, SW, PT, PL, OH, OW):
    """out (N, OH, OW, C): each window's sum over its real cells of x (N, H, W, C), divided by
    count (OH, OW), the number of those cells."""
    out = np.empty((x.shape[0], OH, OW, x.shape[3]), x.dtype)
    split(_forward_rows, out.shape[0] * OH, np.ascontiguousarray(x), count.astype(x.dtype), out,
          KH, KW, SH, SW, PT, PL)
    return out


def avg_pool_backward(g, x_shape, KH, KW, SH, SW, PT, PL):
    """dx (x_shape): each cell the sum of g = dout / count over the windows that contain it."""
    dx = np.empty(x_shape, g.dtype)
    split(_backward_rows, dx.shape[0] * dx.shape[1], np.ascontiguousarray(g), dx, KH, KW, SH, SW, PT, PL)
    return dx
