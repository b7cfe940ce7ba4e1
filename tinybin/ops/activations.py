"""ReLU, sReLU and ELU: the nonlinearities of the paper's variants (P2 §II.C, Eqs. 4–5; the variants that use them are listed in §IV).

Each derivative's value *at the kink* is a convention; it is stated here and pinned by tests.

Each forward keeps only its output for the backward: the derivative can be read off the output
(ReLU: out > 0 exactly where x > 0), and the output is the next layer's input, which that layer
keeps anyway. So an activation adds no saved memory of its own (a boolean mask would be one
byte per value, ELU's two arrays five).
"""
import numpy as np

from .. import kernels
from ..tensor import Function


def _fast(*arrays):
    """The Numba element-wise kernels (same bits as the NumPy lines below) when they apply:
    not under the reference setting, float arrays of one shape and dtype, C-contiguous."""
    impl = kernels.pointwise()
    a = arrays[0]
    if impl is None or a.dtype.kind != "f" or not all(
            b.shape == a.shape and b.dtype == a.dtype and b.flags.c_contiguous for b in arrays):
        return None
    return impl


def clamp_forward(x, floor):
    """out = max(floor, x): ReLU (floor 0) and sReLU (floor -1). d out/dx = 1 if x > floor else 0.
    Shapes: any; out has x's shape."""
    impl = _fast(x)
    out = impl.clamp_below(x, floor) if impl else np.maximum(x, x.dtype.type(floor))
    return out, out


def clamp_backward(dout, out, floor):
    """dout · (out > floor), read off the output (out > floor exactly where x > floor)."""
    impl = _fast(dout, out)
    return impl.pass_above(dout, out, floor) if impl else dout * (out > floor)


def relu_forward(x):
    """out = max(0, x).

    d out/dx = 1 if x > 0 else 0 (0 at x = 0).
    Shapes: any; out has x's shape.
    """
    return clamp_forward(x, 0)


def relu_backward(dout, out):
    return clamp_backward(dout, out, 0)


def srelu_forward(x):
    """Shifted ReLU: out = max(-1, x)  [P2 §II.C, Eq. 5; variants final-bn, srelu, mean-bn].

    Keeps the unit's output mean near zero without BN (ReLU's output is all >= 0).
    d out/dx = 1 if x > -1 else 0 (0 at x = -1).
    """
    return clamp_forward(x, -1)


def srelu_backward(dout, out):
    return clamp_backward(dout, out, -1)


def elu_forward(x, alpha=1.0):
    """ELU: out = x if x > 0 else alpha·(exp(x) − 1)  [Clevert et al. 2016; P2 variant 5].

    d out/dx = 1 if x > 0 else alpha·exp(x) = out + alpha (at x = 0: alpha, which is 1 for the
    default alpha = 1, so the derivative is continuous there). out > 0 exactly where x > 0
    (alpha > 0), so the output alone tells the two branches apart.
    """
    if not alpha > 0:
        raise ValueError(f"elu needs alpha > 0, got {alpha}")
    neg = alpha * np.expm1(np.minimum(x, 0))   # minimum(): no overflow warnings for large x
    out = np.where(x > 0, x, neg).astype(x.dtype, copy=False)
    return out, (out, alpha)


def elu_backward(dout, cache):
    out, alpha = cache
    impl = _fast(dout, out)
    if impl:
        return impl.elu_backward(dout, out, alpha)
    return dout * np.where(out > 0, 1, out + alpha).astype(dout.dtype, copy=False)


ReLU = Function.from_pair("ReLU", relu_forward, relu_backward)
SReLU = Function.from_pair("SReLU", srelu_forward, srelu_backward)
ELU = Function.from_pair("ELU", elu_forward, elu_backward)



def relu(x):
    """max(0, x)"""
    return ReLU.apply(x)


def srelu(x):
    """max(-1, x)"""
    return SReLU.apply(x)


def elu(x, alpha=1.0):
    """x if x > 0 else alpha·(exp(x) − 1)"""
    return ELU.apply(x, alpha=alpha)
