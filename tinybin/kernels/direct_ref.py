"""Direct convolution (NHWC, no bias) in NumPy: the readable version of direct_numba.py.

A correlation is a sum of KH*KW shifted matrix products. With xp the input padded by
(PT, PB, PL, PR) zeros, the window offset (i, j) sees the slab xp[:, i:i+OH, j:j+OW, :] at
stride 1, every SH-th row and SW-th column of xp[:, i:, j:, :] at stride (SH, SW), and

    out = sum over (i, j) of  slab(i, j) @ w[i, j]          (C, OC) per offset

No column matrix is formed: each product reads the input once, in place. The weight gradient
is the same sum turned around, dw[i, j] = slab(i, j)ᵀ @ dout over all N*OH*OW positions, and the
input gradient of a stride-1 layer is the forward correlation of dout with the filter flipped
and its channels swapped (see grad_input; a strided layer's runs by col2im). Shapes as in
im2col_ref.py: x (N, H, W, C), w (KH, KW, C, OC), padding (PT, PB, PL, PR), out (N, OH, OW, OC),
OH = (H + PT + PB - KH) // SH + 1 (OW likewise).
"""
import numpy as np


def _padded(x, padding):
    PT, PB, PL, PR = padding
    return np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))


def _slab(xp, i, j, OH, OW, stride):
    """xp[:, oh*SH + i, ow*SW + j, :] for every output cell (oh, ow): (N, OH, OW, C)."""
    SH, SW = stride
    return xp[:, i:i + SH * (OH - 1) + 1:SH, j:j + SW * (OW - 1) + 1:SW, :]


def forward(x, w, padding, stride=(1, 1)):
    """out[n, oh, ow, oc] = sum_{i, j, c} xp[n, oh*SH + i, ow*SW + j, c] * w[i, j, c, oc]"""
    KH, KW, C, OC = w.shape
    xp = _padded(x, padding)
    N, HP, WP, _ = xp.shape
    OH, OW = (HP - KH) // stride[0] + 1, (WP - KW) // stride[1] + 1
    out = np.zeros((N, OH, OW, OC), x.dtype)
    for i in range(KH):
        for j in range(KW):
            out += _slab(xp, i, j, OH, OW, stride) @ w[i, j]           # N, OH, OW, OC
    return out


def input_gradient_as_forward(w, padding):
    """(w', padding') such that dx = forward(dout, w', padding') for a stride-1 correlation:
    w'[i, j, oc, c] = w[KH-1-i, KW-1-j, c, oc], padding' = K-1-pad on every side.

    Input cell (h, w) received w[i, j] times the output cell i rows above and j columns left
    of it, so its gradient collects dout at those cells: a "full" correlation with the flipped
    filter, channels swapped. Needs every pad <= K-1 (a larger pad leaves output cells that see
    no input). Winograd's input gradient (conv_winograd.py) uses it too."""
    KH, KW = w.shape[:2]
    PT, PB, PL, PR = padding
    w_flipped = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))   # KH, KW, OC, C
    return w_flipped, (KH - 1 - PT, KH - 1 - PB, KW - 1 - PL, KW - 1 - PR)


def grad_input(dout, w, padding, keep=None, floor=0.0):
    """dx = dout ⋆ w' with w' the flipped filter (input_gradient_as_forward), stride 1;
    with keep (x's shape), dx · (keep > floor): the backward of an activation max(·, floor) whose
    output keep was the layer's input (direct_numba applies it as it stores dx)."""
    dx = forward(dout, *input_gradient_as_forward(w, padding))
    return dx if keep is None else dx * (keep > floor)


def grad_weights(x, dout, padding, KH, KW, stride=(1, 1)):
    """dw[i, j] = sum over (n, oh, ow) of xp[n, oh*SH + i, ow*SW + j, :]ᵀ dout[n, oh, ow, :]   (C, OC)"""
    xp = _padded(x, padding)
    N, OH, OW, OC = dout.shape
    C = x.shape[3]
    G = dout.reshape(-1, OC)
    dw = np.empty((KH, KW, C, OC), x.dtype)
    for i in range(KH):
        for j in range(KW):
            dw[i, j] = _slab(xp, i, j, OH, OW, stride).reshape(-1, C).T @ G
    return dw
