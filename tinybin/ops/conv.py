"""2-d convolution (NHWC, no bias) as im2col + one matrix product, and its backward.

Layers that kernels/conv_algorithms.py gives to another algorithm are handed over at the top of
each function: the wide 3×3 stride-1 layers to Winograd (conv_winograd.py), the narrow stride-1
layers to the direct kernels (kernels/direct_ref.py first, then direct_numba.py). Both compute
the same convolution as the im2col path below, to rounding.

Notation (as in tinybin/kernels/im2col_ref.py): x is (N, H, W, C), w is (KH, KW, C, OC),
stride (SH, SW), zero padding (PT, PB, PL, PR), output (N, OH, OW, OC) with
OH = (H + PT + PB - KH) // SH + 1 and OW = (W + PL + PR - KW) // SW + 1.
"""
import numpy as np

from .. import kernels
from ..geometry import as_padding, as_pair, output_size
from ..tensor import Function
from .conv_winograd import winograd_forward, winograd_grad_input, winograd_grad_weights


def _check_conv_inputs(x, w):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d needs x of shape (N, H, W, C) and w of shape (KH, KW, C_in, C_out); "
                         f"got x {x.shape} and w {w.shape}")
    C_in = w.shape[2]
    if x.shape[3] != C_in:
        if x.shape[1] == C_in:
            raise ValueError(f"x {x.shape} looks like NCHW; tinybin is NHWC: x must be (N, H, W, C) with "
                             f"C = {C_in} for w {w.shape} (np.transpose(x, (0, 2, 3, 1)) converts it)")
        raise ValueError(f"channel mismatch: x {x.shape} has C = {x.shape[3]} channels but w {w.shape} "
                         f"expects C_in = {C_in} (w is (KH, KW, C_in, C_out))")
    if x.dtype != w.dtype or x.dtype not in (np.float32, np.float64):
        raise ValueError(f"conv2d needs x and w of one float dtype (float32 or float64); got x {x.shape} "
                         f"{x.dtype} and w {w.shape} {w.dtype}: cast one with .astype()")


def conv2d_forward(x, w, stride=1, padding=0):
    """out[n, oh, ow, oc] = sum_{i, j, c} xp[n, oh*SH + i, ow*SW + j, c] * w[i, j, c, oc]

    xp is x with PT, PB zero rows above and below and PL, PR zero columns left and right.

    im2col gathers, for every output position (n, oh, ow), the KH*KW*C values its window sees
    into one row: cols[(n, oh, ow), (i, j, c)] = xp[n, oh*SH + i, ow*SW + j, c]. The sum over
    (i, j, c) is then a single matrix product, and in NHWC its (N*OH*OW, OC) result already is
    the output, laid out (N, OH, OW, OC):

        out = cols @ W,    W = w.reshape(KH*KW*C, OC)

    Shapes: x (N, H, W, C), w (KH, KW, C, OC), stride int or (SH, SW), padding int or
    (PT, PB, PL, PR) -> out (N, OH, OW, OC). The cache keeps x and w, not the columns
    (see conv2d_backward).
    Reference: Chellapilla, Puri & Simard, "High performance convolutional neural networks for
    document processing" (2006) -- convolution unrolled into a matrix product.
    """
    x, w = np.asarray(x), np.asarray(w)
    _check_conv_inputs(x, w)
    stride, padding = as_pair(stride, "stride"), as_padding(padding)
    (SH, SW), (PT, PB, PL, PR) = stride, padding
    N, H, W_, C = x.shape
    KH, KW, _, OC = w.shape
    OH, OW = output_size(H, W_, KH, KW, SH, SW, PT, PB, PL, PR)
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d output would be {OH}x{OW}: input x {x.shape} with padding {padding} is "
                         f"smaller than the kernel of w {w.shape}")
    m = kernels.winograd_tile(w.shape, stride, padding, x.dtype)  # 3×3 stride 1: Winograd (conv_winograd.py)
    if m:
        return winograd_forward(x, w, padding, m), (x, w, stride, padding)
    if kernels.direct_passes(w.shape, stride, padding, x.dtype)[0]:  # narrow stride 1: kernels/direct_ref.py
        return kernels.direct_implementation().forward(x, w, padding), (x, w, stride, padding)
    cols = kernels.im2col(x, KH, KW, stride, padding)  # N*OH*OW, KH*KW*C (shared workspace)
    out = cols @ w.reshape(KH * KW * C, OC)            # N*OH*OW, OC
    return out.reshape(N, OH, OW, OC), (x, w, stride, padding)


def conv2d_backward(dout, cache, needs=(True, True)):
    """dw = cols^T @ dout,  dx = col2im(dout @ W^T)

    With out = cols @ W (see conv2d_forward) and G = dout.reshape(N*OH*OW, OC):

        dL/dW    = cols^T @ G                       (KH*KW*C, OC) -> reshaped to w's shape
        dL/dcols = G @ W^T                          (N*OH*OW, KH*KW*C)
        dL/dx    = col2im(dL/dcols)

    im2col is linear: every column entry is a copy of one cell of xp. Its transpose col2im
    therefore adds each column entry back onto the cell it was copied from -- a cell seen by
    several overlapping windows collects all their gradients -- and drops the entries that
    were copies of padding:

        dx[n, h, w, c] = sum over (oh, ow, i, j) with oh*SH + i - PT = h, ow*SW + j - PL = w
                         of dL/dcols[(n, oh, ow), (i, j, c)]

    The columns are recomputed from x rather than kept from forward: one im2col is cheap next
    to the matrix products, and keeping every layer's columns would not fit in memory.

    needs = (need dx, need dw); a gradient that is not needed is returned as None and costs
    nothing (the first layer's input needs no gradient).
    Shapes: dout (N, OH, OW, OC) -> dx (N, H, W, C), dw (KH, KW, C, OC).
    """
    x, w, stride, padding = cache
    KH, KW, C, OC = w.shape
    G = np.ascontiguousarray(dout, dtype=x.dtype).reshape(-1, OC)  # N*OH*OW, OC
    dx = dw = None
    m = kernels.winograd_tile(w.shape, stride, padding, x.dtype)  # 3×3 stride 1: Winograd (conv_winograd.py)
    _, direct_dx, direct_dw = kernels.direct_passes(w.shape, stride, padding, x.dtype)
    direct = kernels.direct_implementation()
    if needs[1] and m and kernels.winograd_weight_gradient():
        dw = winograd_grad_weights(x, G.reshape(dout.shape), padding, m)
    elif needs[1] and direct_dw:
        dw = direct.grad_weights(x, G.reshape(dout.shape), padding, KH, KW)
    elif needs[1]:
        cols = kernels.im2col(x, KH, KW, stride, padding)          # N*OH*OW, KH*KW*C
        dw = (cols.T @ G).reshape(w.shape)                         # KH*KW*C, OC -> KH, KW, C, OC
    if needs[0] and m:
        dx = winograd_grad_input(G.reshape(dout.shape), w, x.shape, padding, m)
    elif needs[0] and direct_dx:
        dx = direct.grad_input(G.reshape(dout.shape), w, padding)
    elif needs[0]:
        dcols = kernels.workspace((G.shape[0], KH * KW * C), x.dtype)  # N*OH*OW, KH*KW*C (reuses cols)
        np.matmul(G, w.reshape(KH * KW * C, OC).T, out=dcols)      # N*OH*OW, KH*KW*C
        dx = kernels.col2im(dcols, x.shape, KH, KW, stride, padding)  # N, H, W, C
    return dx, dw


class Conv2d(Function):
    """conv2d as an autograd Function; skips dx when the input needs no gradient."""

    @staticmethod
    def forward(ctx, x, w, stride=1, padding=0):
        out, ctx.cache = conv2d_forward(x, w, stride, padding)
        return out

    @staticmethod
    def backward(ctx, dout):
        return conv2d_backward(dout, ctx.cache, needs=ctx.needs_input_grad)


def conv2d(x, w, stride=1, padding=0):
    """NHWC convolution without bias: x (N, H, W, C), w (KH, KW, C_in, C_out) -> (N, OH, OW, C_out).

    padding is an int or (top, bottom, left, right); stride an int or (SH, SW)."""
    return Conv2d.apply(x, w, stride=stride, padding=padding)
