"""Fast element-wise kernels of the training step, compiled by Numba: the activations' forward
and backward.

The readable versions are the NumPy ops themselves (tinybin/ops/activations.py),
which call these when the reference setting is off (`kernels.pointwise()` picks). They give
bit-for-bit the same results as the NumPy expressions they replace -- same operations on the
same float type, each element on its own -- so switching changes no number of a training run
(tests/test_pointwise.py checks with array_equal). What they save is passes over memory:
NumPy's `np.where(out > lo, dout, 0)` writes a boolean temporary and then reads it back, and
every NumPy call runs on one core; here each element is read once and written once, and the
array is split among threads (kernels/workers.py) when the `parallel` setting is on (kernels/config.py).
(The residual add has no kernel here: NumPy's a + b is already one pass, and a Numba version
measured slower, 2.0 ms against 1.5 ms on a 125×32×32×16 float32 pair.)

Arrays are treated as flat: the callers pass C-contiguous arrays and get a new one of the
same shape.
"""
import numpy as np
from numba import njit

from .workers import split

_CHUNK = 1 << 16  # arrays up to this many elements run on one thread: too small to share


@njit(cache=True, nogil=True)
def _clamp_below(x, lo, out, start, stop):
    for i in range(start, stop):
        v = x[i]
        out[i] = lo if v < lo else v          # NaN stays NaN (v < lo is False), as np.maximum


@njit(cache=True, nogil=True)
def _pass_above(dout, out, lo, one, zero, dx, start, stop):
    for i in range(start, stop):
        dx[i] = dout[i] * (one if out[i] > lo else zero)   # a product, as NumPy's dout * mask: inf·0 is NaN


@njit(cache=True, nogil=True)
def _elu_backward(dout, out, alpha, dx, start, stop):
    for i in range(start, stop):
        o = out[i]
        dx[i] = dout[i] if o > 0 else dout[i] * (o + alpha)   # alpha already in out's dtype


def _run(kernel, *arrays_and_scalars, n):
    """The kernel over elements 0..n-1: on this thread, or shared among threads when the array is large."""
    if n > _CHUNK:
        split(kernel, n, *arrays_and_scalars)
    else:
        kernel(*arrays_and_scalars, 0, n)


def _flat(a):
    return a.reshape(-1)                      # a view: the callers pass C-contiguous arrays


def clamp_below(x, lo):
    """max(x, lo) element-wise (ReLU: lo = 0, sReLU: lo = -1), a new array like x."""
    out = np.empty_like(x)
    _run(_clamp_below, _flat(x), x.dtype.type(lo), _flat(out), n=x.size)
    return out


def pass_above(dout, out, lo):
    """dout · (out > lo): the backward of clamp_below, read off its output."""
    dx = np.empty_like(dout)
    t = out.dtype.type
    _run(_pass_above, _flat(dout), _flat(out), t(lo), t(1), t(0), _flat(dx), n=out.size)
    return dx


def elu_backward(dout, out, alpha):
    """dout where out > 0, else dout · (out + alpha): ELU's backward, read off its output."""
    dx = np.empty_like(dout)
    _run(_elu_backward, _flat(dout), _flat(out), out.dtype.type(alpha), _flat(dx),
         n=out.size)
    return dx
