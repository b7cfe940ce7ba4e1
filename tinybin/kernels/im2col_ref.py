"""Reference im2col / col2im for NHWC convolution: plain NumPy, written to be read.

im2col turns convolution into one matrix product. Every output position (n, oh, ow) gets a row
holding the KH×KW×C input values its window sees, so that

    cols @ w.reshape(KH*KW*C, OC)   ->   (N*OH*OW, OC)  ==  the NHWC output, reshaped.

col2im is its transpose (adjoint): it sends each column entry back to the input cell it was
copied from, adding where windows overlap. That is exactly what the input gradient needs.

Notation
--------
N        batch size
H, W     input height and width
C        input channels
OC       output channels
KH, KW   kernel height and width
SH, SW   stride along height and width
PT, PB   zero rows padded at the top and the bottom
PL, PR   zero columns padded at the left and the right
OH, OW   output height and width: OH = (H + PT + PB - KH) // SH + 1, OW likewise

Both functions write into a buffer the caller gives them (the fast kernels in
`im2col_numba.py` have the same signatures), and loop only over the KH×KW window: each
iteration copies one strided slice covering every image, output row, output column and channel.
"""
import numpy as np

from ..geometry import output_size  # noqa: F401 -- the kernels' callers read it from here too


def im2col(x, cols, KH, KW, SH, SW, PT, PB, PL, PR):
    """Fill cols (N*OH*OW, KH*KW*C) with the windows of x (N, H, W, C); return cols.

    cols[(n, oh, ow), (i, j, c)] = xp[n, oh*SH + i, ow*SW + j, c],  xp = x zero-padded.
    """
    N, H, W, C = x.shape
    OH, OW = output_size(H, W, KH, KW, SH, SW, PT, PB, PL, PR)
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))           # N, H+PT+PB, W+PL+PR, C
    cols6 = cols.reshape(N, OH, OW, KH, KW, C)                      # a view: writes land in cols
    for i in range(KH):
        i_end = i + SH * OH
        for j in range(KW):
            j_end = j + SW * OW
            cols6[:, :, :, i, j, :] = xp[:, i:i_end:SH, j:j_end:SW, :]  # N, OH, OW, C
    return cols


def col2im(cols, dx, KH, KW, SH, SW, PT, PB, PL, PR):
    """Fill dx (N, H, W, C) with the sum of the column entries copied from each cell; return dx.

    dx[n, h, w, c] = sum of cols[(n, oh, ow), (i, j, c)] over all oh*SH + i - PT = h,
    ow*SW + j - PL = w. Entries that came from padding are dropped.
    """
    N, H, W, C = dx.shape
    OH, OW = output_size(H, W, KH, KW, SH, SW, PT, PB, PL, PR)
    cols6 = cols.reshape(N, OH, OW, KH, KW, C)
    dxp = np.zeros((N, H + PT + PB, W + PL + PR, C), dtype=dx.dtype)  # N, H+PT+PB, W+PL+PR, C
    for i in range(KH):
        i_end = i + SH * OH
        for j in range(KW):
            j_end = j + SW * OW
            # Overlapping windows (stride < kernel) saw the same cell more than once:
            # each of them contributes to its gradient, so add, never assign.
            dxp[:, i:i_end:SH, j:j_end:SW, :] += cols6[:, :, :, i, j, :]  # N, OH, OW, C
    dx[...] = dxp[:, PT:PT + H, PL:PL + W, :]                         # N, H, W, C
    return dx
