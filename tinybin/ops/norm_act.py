"""Training batch norm with an optional ReLU after it, as one op, on the fused kernels.

The composition F.relu(F.batch_norm(x, weight, bias)) of ops/norm.py and ops/activations.py in
one forward and one backward (tinybin/kernels/bn_ref.py is the readable kernel, bn_numba.py the
fast one; `kernels.bn_implementation()` picks). What it saves for the backward is the input x,
which the graph keeps anyway, and two per-channel vectors (μ, 1/σ): not x̂ (4 bytes per value in
float32), nor the BN output that a separate ReLU op holds as its input (4), nor its mask (1).

Notation as in ops/norm.py: x is (N, H, W, C) or (N, C), viewed as (m, C) rows, m = N·H·W;
g = weight (1 if None), o = bias (0 if None), act = ReLU or the identity.
"""
import numpy as np

from .. import kernels
from ..tensor import Function
from .norm import _check, _rows


def batch_norm_act_forward(x, weight=None, bias=None, eps=1e-5, relu=True):
    """y = act(g·x̂ + o),  x̂ = (x − μ)/sqrt(σ² + ε),  μ, σ² this batch's per-channel mean and
    biased variance (1/m).

    Shapes: x (N, H, W, C) or (N, C); weight, bias (C,) or None -> y like x.
    cache = (x, μ, 1/σ in x's dtype, g, o, relu, μ, σ² in float64): what backward needs, and the
    batch statistics for moving averages and recalibration.
    """
    _check(x, weight=weight, bias=bias)
    _rows(x)                                                 # (N, H, W, C) or (N, C) only
    x = np.ascontiguousarray(x)                              # a no-op for the engine's arrays
    y = np.empty(x.shape, x.dtype)                           # C order: the kernels write its rows
    stats = {}
    mean, inv_std = kernels.bn_implementation().bn_act_forward(x, weight, bias, eps, bool(relu), y, stats=stats)
    return y, (x, mean, inv_std, weight, bias, bool(relu), stats["mean"], stats["var"])


def batch_norm_act_backward(dout, cache):
    """With z = g·x̂ + o (the BN output, y = act(z)) and sums over the m values of a channel:

        dz = dout · act'(z)               ReLU: 1 where z > 0, 0 elsewhere (0 at z = 0, as F.relu)
        dg = Σ dz·x̂,   do = Σ dz,   dx̂ = g·dz

    and, since x̂_i = (x_i − μ)/σ with μ = mean(x), σ² = mean((x − μ)²) + ε,
    ∂x̂_i/∂x_j = (1/σ)·(δ_ij − 1/m − x̂_i·x̂_j/m), so

        dx = (1/σ) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂·x̂))

    -- ops/norm.py's batch_norm_backward applied to dz. z and the mask are recomputed from x, μ
    and 1/σ instead of being stored. Shapes: dout like x -> dx like x, dweight, dbias (C,) or None.
    """
    x, mean, inv_std, weight, bias, relu, _, _ = cache
    dx = np.empty(x.shape, x.dtype)
    dweight, dbias = kernels.bn_implementation().bn_act_backward(dout, x, mean, inv_std, weight, bias, relu, dx)
    return dx, dweight, dbias


class BatchNormAct(Function):
    """Training batch norm (+ ReLU): inputs (x, weight, bias), weight and bias optional (None);
    pass a dict as `stats` to receive the batch mean and variance (float64)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5, relu=True, stats=None):
        out, ctx.cache = batch_norm_act_forward(x, weight, bias, eps=eps, relu=relu)
        if stats is not None:                                # for moving averages and recalibration
            stats["mean"], stats["var"] = ctx.cache[6], ctx.cache[7]
        return out

    @staticmethod
    def backward(ctx, dout):
        return batch_norm_act_backward(dout, ctx.cache)


def batch_norm_act(x, weight=None, bias=None, eps=1e-5, relu=True, return_stats=False):
    """max(0, batch_norm(x, weight, bias)) (relu=False: batch_norm alone) with this batch's
    statistics, as one op. return_stats=True also returns the batch mean and biased variance
    (float64 ndarrays (C,)), which BatchNorm2d keeps."""
    stats = {}
    out = BatchNormAct.apply(x, weight, bias, eps=eps, relu=relu, stats=stats)
    return (out, stats["mean"], stats["var"]) if return_stats else out
