"""One bit per weight: W_b = multiplier · sign(W), straight-through gradient (P1).

Training keeps full-precision *latent* weights W; every forward and backward pass uses
W_b = c·sign(W) with the constant c = sqrt(2 / (KH·KW·C_in)) (He init std, fan-in); only the
bits (sign) are needed at inference.

The gradient pitfall: sign() has zero derivative almost everywhere, so training uses the
straight-through estimator dL/dW := dL/dW_b — identity, no clipping, and NOT multiplied by c.
Writing `c * ste_sign(W)` through autograd would multiply the latent gradient by c (≈ 0.02–0.06)
and silently lower the learning rate. That is why the multiplier lives *inside* this op.
"""
import numpy as np

from ..tensor import Function


def binarize_forward(w, multiplier):
    """out = multiplier · sign(w), with sign(0) = +1 so the weights are strictly two-valued.

    (PyTorch/TensorFlow's sign gives 0 at 0; latent weights are never exactly 0 in practice,
    but a binary network should not have a third value.)
    Shapes: w (KH, KW, C_in, C_out) or any; out has w's shape, values in {−c, +c}.
    """
    out = np.where(w >= 0, multiplier, -multiplier).astype(w.dtype, copy=False)
    return out, None


def binarize_backward(dout, cache):
    """dL/dw := dL/dout  (straight-through: identity, unscaled, unclipped)."""
    return dout


Binarize = Function.from_pair("Binarize", binarize_forward, binarize_backward)


def pack_bits(w: np.ndarray) -> np.ndarray:
    """The stored form of a 1-bit layer: bit = 1 where w >= 0 (weight +c), else 0."""
    return np.packbits((w >= 0).ravel())


def unpack_bits(bits: np.ndarray, shape, multiplier, dtype=np.float32) -> np.ndarray:
    """Inverse of pack_bits: weights c·(2b − 1) with the given shape."""
    b = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape)
    return (multiplier * (2.0 * b - 1.0)).astype(dtype)



def binarize(w, multiplier):
    """multiplier·sign(w) (sign(0) = +1); backward: identity to the latent w, unscaled."""
    return Binarize.apply(w, multiplier=multiplier)
