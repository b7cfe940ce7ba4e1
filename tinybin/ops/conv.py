"""2-d convolution (NHWC, no bias): the op, derived as im2col + one matrix product, and its backward.

The formulas below are how the im2col row of kernels/conv_algorithms.py computes each pass.
Which algorithm runs a layer is that table's choice (`kernels.conv_plan`): the wide 3×3
stride-1 layers run by Winograd, the narrow stride-1 layers by the direct kernels, the rest
by im2col; all compute the same convolution, to rounding.

Notation (as in tinybin/kernels/im2col_ref.py): x is (N, H, W, C), w is (KH, KW, C, OC),
stride (SH, SW), zero padding (PT, PB, PL, PR), output (N, OH, OW, OC) with
OH = (H + PT + PB - KH) // SH + 1 and OW = (W + PL + PR - KW) // SW + 1.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels
from ..geometry import as_padding, as_pair, output_size
from ..tensor import Function
from .activations import clamp_backward, clamp_forward


class ConvCache(NamedTuple):
    x: np.ndarray
    w: np.ndarray
    stride: tuple
    padding: tuple
    plan: kernels.ConvPlan   # the passes the forward chose: the backward runs the same plan
    floor: float | None      # an activation max(·, floor) folded in: x is its output


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


def conv2d_forward(x, w, stride=1, padding=0, floor=None):
    """out[n, oh, ow, oc] = sum_{i, j, c} xp[n, oh*SH + i, ow*SW + j, c] * w[i, j, c, oc]

    xp is x with PT, PB zero rows above and below and PL, PR zero columns left and right.

    im2col gathers, for every output position (n, oh, ow), the KH*KW*C values its window sees
    into one row: cols[(n, oh, ow), (i, j, c)] = xp[n, oh*SH + i, ow*SW + j, c]. The sum over
    (i, j, c) is then a single matrix product, and in NHWC its (N*OH*OW, OC) result already is
    the output, laid out (N, OH, OW, OC):

        out = cols @ W,    W = w.reshape(KH*KW*C, OC)

    Shapes: x (N, H, W, C), w (KH, KW, C, OC), stride int or (SH, SW), padding int or
    (PT, PB, PL, PR) -> out (N, OH, OW, OC). The cache keeps x, w and the plan, not the
    columns (see conv2d_backward).

    floor: the conv of max(x, floor) instead (a ReLU, floor 0, or sReLU, floor -1, folded in;
    the model does it where nothing watches the activation's output): the same numbers as the
    two ops, one pass fewer in the backward, where the direct kernels apply the activation's
    mask to dx as they store it.
    Reference: Chellapilla, Puri & Simard, "High performance convolutional neural networks for
    document processing" (2006) -- convolution unrolled into a matrix product.
    """
    x, w = np.asarray(x), np.asarray(w)
    _check_conv_inputs(x, w)
    stride, padding = as_pair(stride, "stride"), as_padding(padding)
    OH, OW = output_size(*x.shape[1:3], *w.shape[:2], *stride, *padding)
    if OH < 1 or OW < 1:
        raise ValueError(f"conv2d output would be {OH}x{OW}: input x {x.shape} with padding {padding} is "
                         f"smaller than the kernel of w {w.shape}")
    plan = kernels.conv_plan(w.shape, stride, padding, x.dtype)
    if floor is not None:
        x, _ = clamp_forward(x, floor)                              # the activation's output
    return plan.forward(x, w, stride, padding), ConvCache(x, w, stride, padding, plan, floor)


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
    x, w, stride, padding, plan, floor = cache
    dout = np.ascontiguousarray(dout, dtype=x.dtype)                # N, OH, OW, OC
    dw = plan.weight_gradient(x, dout, w.shape, stride, padding) if needs[1] else None
    if not needs[0]:
        return None, dw
    if floor is not None and plan.input_gradient.masks:             # the mask applied as dx is stored
        return plan.input_gradient(dout, w, x.shape, stride, padding, keep=x, floor=floor), dw
    dx = plan.input_gradient(dout, w, x.shape, stride, padding)
    return (dx if floor is None else clamp_backward(dx, x, floor)), dw


class Conv2d(Function):
    """conv2d as an autograd Function; skips dx when the input needs no gradient."""

    @staticmethod
    def forward(ctx, x, w, stride=1, padding=0, floor=None):
        out, ctx.cache = conv2d_forward(x, w, stride, padding, floor)
        return out

    @staticmethod
    def backward(ctx, dout):
        return conv2d_backward(dout, ctx.cache, needs=ctx.needs_input_grad)


def conv2d(x, w, stride=1, padding=0, floor=None):
    """NHWC convolution without bias: x (N, H, W, C), w (KH, KW, C_in, C_out) -> (N, OH, OW, C_out).

    padding is an int or (top, bottom, left, right); stride an int or (SH, SW). floor: convolve
    max(x, floor) (ReLU: 0, sReLU: -1) as one op (conv2d_forward)."""
    return Conv2d.apply(x, w, stride=stride, padding=padding, floor=floor)
