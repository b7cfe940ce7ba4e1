"""Elementwise arithmetic, reductions, matmul and shape ops behind Tensor's operators.

Each primitive is a forward/backward pair; `sub`, `div` and `mean` are built from primitives
rather than differentiated a second time. Broadcasting in forward means summing in backward:
`unbroadcast` reduces a gradient back to the shape of the input it belongs to.
"""
import numpy as np

from ..tensor import Function, Tensor


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum grad over the axes that broadcasting added or stretched, so it has `shape`."""
    while grad.ndim > len(shape):          # leading axes added by broadcasting
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):    # axes of size 1 stretched to match
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


def add_forward(a, b):
    """out = a + b (broadcasting).  da = dout, db = dout, each summed back to its shape."""
    return a + b, (a.shape, b.shape)


def add_backward(dout, cache):
    a_shape, b_shape = cache
    return unbroadcast(dout, a_shape), unbroadcast(dout, b_shape)


def mul_forward(a, b):
    """out = a * b.  da = dout * b, db = dout * a."""
    return a * b, (a, b)


def mul_backward(dout, cache):
    a, b = cache
    return unbroadcast(dout * b, a.shape), unbroadcast(dout * a, b.shape)


def neg_forward(a):
    """out = -a.  da = -dout."""
    return -a, None


def neg_backward(dout, cache):
    return -dout


def power_forward(a, exponent):
    """out = a ** p for a constant p.  da = dout * p * a ** (p - 1)."""
    return a ** exponent, (a, exponent)


def power_backward(dout, cache):
    a, p = cache
    return dout * p * a ** (p - 1)


def exp_forward(a):
    """out = exp(a).  da = dout * out."""
    out = np.exp(a)
    return out, out


def exp_backward(dout, out):
    return dout * out


def log_forward(a):
    """out = log(a).  da = dout / a."""
    return np.log(a), a


def log_backward(dout, a):
    return dout / a


def matmul_forward(a, b):
    """out = a @ b for 2-d a (M,K) and b (K,N).  da = dout @ b.T, db = a.T @ dout."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs (M,K) @ (K,N), got {a.shape} @ {b.shape}")
    return a @ b, (a, b)


def matmul_backward(dout, cache):
    a, b = cache
    return dout @ b.T, a.T @ dout      # (M,K), (K,N)


def sum_forward(a, axis=None, keepdims=False):
    """out = sum of a over axis.  da = dout broadcast back over the summed axes."""
    return np.sum(a, axis=axis, keepdims=keepdims), (a.shape, axis, keepdims)


def sum_backward(dout, cache):
    shape, axis, keepdims = cache
    if not keepdims and axis is not None:
        dout = np.expand_dims(dout, axis)
    return np.broadcast_to(dout, shape).copy()


def reshape_forward(a, shape):
    """out = a viewed with a new shape.  da = dout reshaped back."""
    return a.reshape(shape), a.shape


def reshape_backward(dout, shape):
    return dout.reshape(shape)


def transpose_forward(a, axes=None):
    """out = a with axes permuted.  da = dout permuted by the inverse permutation."""
    return np.transpose(a, axes), (np.argsort(axes) if axes is not None else None)


def transpose_backward(dout, inverse):
    return np.transpose(dout, inverse)


def getitem_forward(a, index):
    """out = a[index] (rows, slices, integer arrays).  da = zeros with dout scattered back
    (np.add.at, so an index that picks the same row twice adds both gradients)."""
    return a[index], (a.shape, index)


def getitem_backward(dout, cache):
    shape, index = cache
    da = np.zeros(shape, dtype=dout.dtype)
    np.add.at(da, index, dout)
    return da


Add = Function.from_pair("Add", add_forward, add_backward)
Mul = Function.from_pair("Mul", mul_forward, mul_backward)
Neg = Function.from_pair("Neg", neg_forward, neg_backward)
Power = Function.from_pair("Power", power_forward, power_backward)
Exp = Function.from_pair("Exp", exp_forward, exp_backward)
Log = Function.from_pair("Log", log_forward, log_backward)
MatMul = Function.from_pair("MatMul", matmul_forward, matmul_backward)
Sum = Function.from_pair("Sum", sum_forward, sum_backward)
Reshape = Function.from_pair("Reshape", reshape_forward, reshape_backward)
Transpose = Function.from_pair("Transpose", transpose_forward, transpose_backward)
GetItem = Function.from_pair("GetItem", getitem_forward, getitem_backward)


def add(a, b):
    return Add.apply(a, b)


def mul(a, b):
    return Mul.apply(a, b)


def neg(a):
    return Neg.apply(a)


def sub(a, b):
    return Add.apply(a, Neg.apply(b))


def div(a, b):
    return Mul.apply(a, Power.apply(b, exponent=-1.0))


def power(a, exponent):
    if isinstance(exponent, Tensor):
        raise TypeError("only a constant exponent is supported")
    return Power.apply(a, exponent=exponent)


def exp(a):
    return Exp.apply(a)


def log(a):
    return Log.apply(a)


def matmul(a, b):
    return MatMul.apply(a, b)


def sum(a, axis=None, keepdims=False):  # noqa: A001 - mirrors numpy
    return Sum.apply(a, axis=axis, keepdims=keepdims)


def mean(a, axis=None, keepdims=False):
    shape = a.shape if isinstance(a, Tensor) else np.shape(a)
    axes = range(len(shape)) if axis is None else np.atleast_1d(axis)
    count = int(np.prod([shape[ax] for ax in axes]))
    return Sum.apply(a, axis=axis, keepdims=keepdims) * (1.0 / count)


def reshape(a, shape):
    return Reshape.apply(a, shape=tuple(shape))


def transpose(a, axes=None):
    return Transpose.apply(a, axes=None if axes is None else tuple(axes))


def getitem(a, index):
    if isinstance(index, Tensor):
        index = index.data
    return GetItem.apply(a, index=index)


def _bind_tensor_operators():
    """Give Tensor its operators, once, here where the ops are defined (DeZero's
    `setup_variable`): tensor.py then needs no import of the ops, and no import cycle exists."""
    def swap(fn):
        return lambda self, other: fn(other, self)

    def axes_or_tuple(fn):
        return lambda self, *args: fn(self, args[0] if len(args) == 1 and isinstance(args[0], (tuple, list))
                                      else (args or None))
    Tensor.__add__, Tensor.__radd__ = add, swap(add)
    Tensor.__sub__, Tensor.__rsub__ = sub, swap(sub)
    Tensor.__mul__, Tensor.__rmul__ = mul, swap(mul)
    Tensor.__truediv__, Tensor.__rtruediv__ = div, swap(div)
    Tensor.__matmul__, Tensor.__rmatmul__ = matmul, swap(matmul)
    Tensor.__neg__, Tensor.__pow__, Tensor.__getitem__ = neg, power, getitem
    Tensor.sum, Tensor.mean, Tensor.exp, Tensor.log = sum, mean, exp, log
    Tensor.reshape, Tensor.transpose = axes_or_tuple(reshape), axes_or_tuple(transpose)
    Tensor.T = property(lambda self: transpose(self))


_bind_tensor_operators()
