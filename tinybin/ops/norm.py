"""Batch normalisation with batch statistics, per channel (METHOD.md §3).

Notation: x is (N, H, W, C) (or (N, C)); statistics are taken per channel over the other axes,
m = N·H·W values each. Internally x is viewed as a 2-d (m, C) array: NHWC makes that view free.
"""
import numpy as np

from ..tensor import Function


def _as_rows(x):
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm expects (N, H, W, C) or (N, C) input, got shape {x.shape}")
    return x.reshape(-1, x.shape[-1])            # m, C


def batch_norm_forward(x, weight=None, bias=None, eps=1e-5, mean_only=False):
    """y = g · (x − μ) / sqrt(σ² + ε) + o, with μ, σ² the channel's batch mean and biased
    variance (1/m). Without weight/bias, g = 1 and o = 0 (the paper's "baseline 2").
    mean_only: y = x − μ (+ o)  [Salimans & Kingma 2016; P2 variant 6].

    Returns (y, cache) with cache["mean"], cache["var"] the batch statistics, which the
    layers use for moving averages and post-training recalibration.
    """
    C = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != (C,):
            raise ValueError(f"batch_norm {name} has shape {p.shape}, expected ({C},) for input {x.shape}")
    if mean_only and weight is not None:
        raise ValueError("mean-only batch norm has no weight (scale)")
    xr = _as_rows(x)                              # m, C
    mean = xr.mean(axis=0)                        # C
    xc = xr - mean                                # m, C
    if mean_only:
        y = xc if bias is None else xc + bias     # m, C
        cache = {"mean": mean, "var": None, "mean_only": True, "has_weight": False,
                 "has_bias": bias is not None, "shape": x.shape}
        return y.reshape(x.shape), cache
    var = np.einsum("ij,ij->j", xc, xc) / xr.shape[0]   # C   biased variance (1/m)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)  # C
    xhat = xc                                     # reuse the buffer: xhat = (x − μ)/σ
    xhat *= inv_std                               # m, C
    y = xhat * weight if weight is not None else xhat.copy()
    if bias is not None:
        y += bias                                 # m, C
    cache = {"mean": mean, "var": var, "xhat": xhat, "inv_std": inv_std, "weight": weight,
             "mean_only": False, "has_weight": weight is not None, "has_bias": bias is not None,
             "shape": x.shape}
    return y.reshape(x.shape), cache


def batch_norm_backward(dout, cache):
    """Gradients of batch norm. With x̂ = (x − μ)/σ, m values per channel and dx̂ = dout·g:

        dx = (1/σ) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))
        dg = Σ dout · x̂,   do = Σ dout               (sums over N, H, W)

    μ and σ depend on every x in the channel; the two mean terms are those paths. (A
    `.sum()` upstream gradient makes dx identically 0 for any g, so a check needs a random
    upstream gradient.) Mean-only: dx = dout − mean(dout).
    Returns (dx, dweight, dbias); None for an absent parameter.
    """
    shape = cache["shape"]
    d = dout.reshape(-1, shape[-1])               # m, C
    dbias = d.sum(axis=0) if cache["has_bias"] else None  # C
    if cache["mean_only"]:
        dx = d - d.mean(axis=0)                   # m, C
        return dx.reshape(shape), None, dbias
    xhat, inv_std = cache["xhat"], cache["inv_std"]
    dweight = np.einsum("ij,ij->j", d, xhat) if cache["has_weight"] else None  # C
    dxhat = d * cache["weight"] if cache["has_weight"] else d                   # m, C
    m = d.shape[0]
    mean_dxhat = dxhat.sum(axis=0) / m            # C
    mean_dxhat_xhat = np.einsum("ij,ij->j", dxhat, xhat) / m  # C
    dx = xhat * mean_dxhat_xhat                   # m, C
    np.subtract(dxhat, dx, out=dx)
    dx -= mean_dxhat
    dx *= inv_std
    return dx.reshape(shape), dweight, dbias


class BatchNorm(Function):
    """Autograd wrapper: inputs (x, weight, bias), weight and bias optional (None);
    pass a dict as `stats` to receive the batch mean and variance."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5, mean_only=False, stats=None):
        out, ctx.cache = batch_norm_forward(x, weight, bias, eps=eps, mean_only=mean_only)
        if stats is not None:  # hand the batch statistics to the caller (moving averages)
            stats["mean"], stats["var"] = ctx.cache["mean"], ctx.cache["var"]
        return out

    @staticmethod
    def backward(ctx, dout):
        return batch_norm_backward(dout, ctx.cache)
