"""The constant scale layer: the paper's replacement for the final batch norm (P2 §III.D).

Multiplying the head conv's output by c = 1/T before global average pooling equals a softmax
temperature T, because GAP is linear: softmax(GAP(z / T)) = softmax(GAP(z) / T).
"""
from ..tensor import Function


def scale_forward(x, c):
    """out = c · x for a constant c (not learned).  dx = c · dout."""
    return x * x.dtype.type(c), c


def scale_backward(dout, c):
    return dout * dout.dtype.type(c)


Scale = Function.from_pair("Scale", scale_forward, scale_backward)



def scale(x, c):
    """c·x for a constant c: the 1/T layer before global average pooling."""
    return Scale.apply(x, c=c)
