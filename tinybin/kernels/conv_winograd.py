"""3×3 stride-1 convolution (NHWC, no bias) by Winograd's minimal filtering F(m×m, 3×3), and its backward.

The transforms and their matrices are in winograd_ref.py (read that first) and, compiled,
winograd_numba.py; here they are put together with the (m+2)² matrix products. These are the
passes of the rows winograd2 and winograd4 of conv_algorithms.py (m = 2, 4): the 3×3 stride-1
layers they take compute the same convolution as by im2col, to rounding.
"""
import numpy as np

from . import winograd_ref
from .columns import workspace
from .config import implementation
from .direct_ref import input_gradient_as_forward


def _buffers(shapes, dtype):
    """Views of consecutive parts of the shared workspace (valid until the next kernel call)."""
    sizes = [int(np.prod(s)) for s in shapes]
    flat = workspace((sum(sizes),), dtype)
    views, start = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(flat[start:start + size].reshape(shape))
        start += size
    return views


def forward(x, w, padding, m):
    """out = Aᵀ [ U ⊙ V ] A per m×m tile, U = G w Gᵀ, V = Bᵀ d B, summed over input channels

    As the matrix products it is computed by, at each of the T² = (m+2)² transform points ab:

        V[ab] = input tiles transformed    (P, C)      P = N * TH * TW tiles
        U[ab] = filters transformed        (C, OC)
        M[ab] = V[ab] @ U[ab]              (P, OC)     one batched matmul of T² GEMMs
        out   = output tiles Aᵀ M A        (N, OH, OW, OC)

    Shapes: x (N, H, W, C), w (3, 3, C, OC), padding (PT, PB, PL, PR), m in {2, 4}
    -> out (N, OH, OW, OC), OH = H + PT + PB - 2, OW = W + PL + PR - 2.
    Reference: Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016, §4–5.
    """
    impl = implementation("winograd")
    PT, PB, PL, PR = padding
    N, H, W, C = x.shape
    OC, T = w.shape[3], m + 2
    OH, OW = H + PT + PB - 2, W + PL + PR - 2
    TH, TW = winograd_ref.tiles(OH, OW, m)
    P = N * TH * TW
    U = winograd_ref.transform_weights(w, m)                  # T*T, C, OC (small: no workspace)
    V, M = _buffers([(T * T, P, C), (T * T, P, OC)], x.dtype)
    impl.input_tiles(np.ascontiguousarray(x), V, m, PT, PL, TH, TW)  # T*T, P, C
    np.matmul(V, U, out=M)                                    # T*T, P, OC
    out = np.empty((N, OH, OW, OC), x.dtype)
    return impl.output_tiles(M, out, m, TH, TW)               # N, OH, OW, OC


def input_gradient(dout, w, x_shape, padding, m):
    """dx = dout ⋆ w' with w'[i, j, oc, c] = w[2-i, 2-j, c, oc], padding (2-PT, 2-PB, 2-PL, 2-PR)

    The input gradient of a stride-1 correlation is the "full" correlation of the output
    gradient with the flipped filter, input and output channels swapped: every x cell received
    w[i, j] times the output cell i rows above and j columns left of it. So it is one more
    Winograd forward. Needs every pad <= 2 (otherwise some dx rows see no output at all).
    Shapes: dout (N, OH, OW, OC), w (3, 3, C, OC) -> dx (N, H, W, C).
    """
    w_flipped, flipped_padding = input_gradient_as_forward(w, padding)   # 3, 3, OC, C; 2 - pad
    dx = forward(dout, w_flipped, flipped_padding, m)
    assert dx.shape == tuple(x_shape), (dx.shape, x_shape)
    return dx


def weight_gradient(x, dout, padding, m):
    """dw = Gᵀ [ Σ_tiles V[ab]ᵀ dM[ab] ] G,  dM = A dY Aᵀ per m×m tile dY of dout

    Backpropagation through forward with w as the variable: out = Aᵀ M A gives
    dL/dM = A dY Aᵀ per tile (dout_tiles), M[ab] = V[ab] @ U[ab] gives dL/dU[ab] = V[ab]ᵀ dM[ab]
    (T² GEMMs of (C, P) @ (P, OC), the sum over tiles inside), and U = G w Gᵀ gives
    dw = Gᵀ dL/dU G. Exact, because the forward is exactly the convolution; V is recomputed
    from x rather than kept (as im2col's columns are).
    Shapes: x (N, H, W, C), dout (N, OH, OW, OC) -> dw (3, 3, C, OC).
    """
    impl = implementation("winograd")
    PT, PB, PL, PR = padding
    N, H, W, C = x.shape
    _, OH, OW, OC = dout.shape
    T = m + 2
    TH, TW = winograd_ref.tiles(OH, OW, m)
    P = N * TH * TW
    V, dM = _buffers([(T * T, P, C), (T * T, P, OC)], x.dtype)
    impl.input_tiles(np.ascontiguousarray(x), V, m, PT, PL, TH, TW)        # T*T, P, C
    impl.dout_tiles(np.ascontiguousarray(dout), dM, m, TH, TW)             # T*T, P, OC
    dU = impl.weight_products(V, dM)                                       # T*T, C, OC
    return winograd_ref.weights_gradient(dU, m)                            # 3, 3, C, OC
