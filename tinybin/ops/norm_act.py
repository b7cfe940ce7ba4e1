"""Training batch norm with an optional ReLU after it, as one op, on the fused kernels.

The composition F.relu(F.batch_norm(x, weight, bias)) of ops/norm.py and ops/activations.py in
one forward and one backward (tinybin/kernels/bn_ref.py is the readable kernel, ops/norm.py's
pair around a ReLU; bn_numba.py the fast one; the `reference` setting picks). What it saves for the backward is the input x,
which the graph keeps anyway, and two per-channel vectors (μ, 1/σ): not x̂ (4 bytes per value in
float32), nor the BN output that a separate ReLU op holds as its input (4), nor its mask (1).

Notation as in ops/norm.py: x is (N, H, W, C) or (N, C), viewed as (rows, C), rows = N·H·W;
g = weight (1 if None), o = bias (0 if None), act = ReLU or the identity.
"""
from typing import NamedTuple

import numpy as np

from .. import kernels
from ..tensor import Function
from .norm import BatchStatistics, _check, _rows


class BatchNormActCache(NamedTuple):
    x: np.ndarray
    mean: np.ndarray            # C   μ in x's dtype
    inv_std: np.ndarray         # C   1/σ in x's dtype
    weight: np.ndarray | None
    bias: np.ndarray | None
    relu: bool
    statistics: BatchStatistics


def batch_norm_act_forward(x, weight=None, bias=None, eps=1e-5, relu=True):
    """y = act(g·x̂ + o),  x̂ = (x − μ)/sqrt(σ² + ε),  μ, σ² this batch's per-channel mean and
    biased variance (1/rows).

    Shapes: x (N, H, W, C) or (N, C); weight, bias (C,) or None -> y like x.
    cache: BatchNormActCache, what backward needs, and the batch statistics for moving averages
    and recalibration (float64 from the Numba kernel, x's dtype from the reference).
    """
    _check(x, weight=weight, bias=bias)
    _rows(x)                                                 # (N, H, W, C) or (N, C) only
    x = np.ascontiguousarray(x)                              # a no-op for the engine's arrays
    y = np.empty(x.shape, x.dtype)                           # C order: the kernels write its rows
    mean, inv_std, statistics = kernels.implementation("bn").bn_act_forward(x, weight, bias, eps, bool(relu), y)
    return y, BatchNormActCache(x, mean, inv_std, weight, bias, bool(relu), statistics)


def batch_norm_act_backward(dout, cache):
    """dz = dout · act'(z), with z = g·x̂ + o the BN output (ReLU: 1 where z > 0, 0 elsewhere,
    0 at z = 0 as F.relu); then dx, dg, do are ops/norm.py's batch_norm_backward applied to dz.
    z and the mask are recomputed from x, μ and 1/σ instead of being stored.
    Shapes: dout like x -> dx like x, dweight, dbias (C,) or None.
    """
    c = cache
    dx = np.empty(c.x.shape, c.x.dtype)
    dweight, dbias = kernels.implementation("bn").bn_act_backward(dout, c.x, c.mean, c.inv_std, c.weight, c.bias,
                                                                  c.relu, dx)
    return dx, dweight, dbias


class BatchNormAct(Function):
    """Training batch norm (+ ReLU): inputs (x, weight, bias), weight and bias optional (None);
    apply returns (output, BatchStatistics)."""

    has_aux = True

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5, relu=True):
        out, ctx.cache = batch_norm_act_forward(x, weight, bias, eps=eps, relu=relu)
        return out, ctx.cache.statistics

    @staticmethod
    def backward(ctx, dout):
        return batch_norm_act_backward(dout, ctx.cache)


def batch_norm_act(x, weight=None, bias=None, eps=1e-5, relu=True, return_stats=False):
    """max(0, batch_norm(x, weight, bias)) (relu=False: batch_norm alone) with this batch's
    statistics, as one op. return_stats=True returns (out, BatchStatistics): the batch mean and
    biased variance (C,), which BatchNorm2d keeps."""
    out, statistics = BatchNormAct.apply(x, weight, bias, eps=eps, relu=relu)
    return (out, statistics) if return_stats else out
