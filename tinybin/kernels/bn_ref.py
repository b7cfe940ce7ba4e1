"""Reference batch norm with an optional ReLU after it, as one op: ops/norm.py's pair around a ReLU.

The pair tinybin/kernels/bn_numba.py compiles (same signatures, tested equal to rounding). It is
the composition F.relu(F.batch_norm(x, weight, bias)), written with ops/norm.py's forward and
backward, so the formula exists once; what it adds is the ReLU's mask and less saved state: the
input x and two per-channel vectors, instead of x̂ (4 bytes per value), the ReLU mask (1 byte)
and the BN output. x̂ and the mask are recomputed in the backward.

Notation as in ops/norm.py: x viewed as (rows, C), rows = N·H·W values per channel;
g = weight (1 if None), o = bias (0 if None), act = ReLU or the identity.

    forward:   y = act(z),  z = batch_norm(x) = g·x̂ + o
    backward:  dz = dout · act'(z)               (ReLU: 1 where z > 0, else 0)
               dx, dg, do = batch_norm_backward(dz)

Reference: Ioffe & Szegedy, "Batch Normalization", ICML 2015, §3 (the backward); the paper's
baseline BN networks put BN → ReLU before every convolution (the authors' code; P2 §III.A, Fig. 2,
draws its blocks post-activation).
"""
import numpy as np

from ..ops.norm import BatchNormCache, batch_norm_backward, batch_norm_forward, normalize


def bn_act_forward(x, weight, bias, eps, relu, y):
    """Fill y (x's shape) with act(g·x̂ + o); return (mean, inv_std, statistics): μ and 1/σ (C,)
    in x's dtype for the backward, and the batch's BatchStatistics (in x's dtype)."""
    z, cache = batch_norm_forward(x, weight, bias, eps)
    y[...] = np.maximum(z, 0) if relu else z
    mean = cache.statistics.mean.astype(x.dtype, copy=False)
    return mean, cache.inv_std, cache.statistics


def bn_act_backward(dout, x, mean, inv_std, weight, bias, relu, dx):
    """Fill dx (x's shape) with dL/dx; return (dweight, dbias), None where absent.

    (The ReLU's derivative at 0 is 0: where g·x̂ + o == 0 no gradient passes.)"""
    C = x.shape[-1]
    xhat, z = normalize(x.reshape(-1, C) - mean, inv_std, weight, bias)     # rows, C
    dz = dout.reshape(-1, C) * (z > 0) if relu else dout                     # rows, C
    dxr, dweight, dbias = batch_norm_backward(dz, BatchNormCache(xhat, inv_std, weight, bias is not None, None))
    dx[...] = dxr.reshape(dx.shape)
    return dweight, dbias
