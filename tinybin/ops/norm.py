"""Batch normalisation per channel (Ioffe & Szegedy 2015; P2 §III, variant 6's mean-only form).

Notation: x is (N, H, W, C) (or (N, C)); statistics are taken per channel over the other axes,
m = N·H·W values each. x is viewed as a 2-d (m, C) array: NHWC makes that view free.

Three pairs, one formula:
    batch_norm_forward / _backward            training: μ, σ² of this batch
    batch_norm_inference_forward / _backward  inference: stored μ, σ² (constants)
    mean_only_bn_forward / _backward          y = x − μ (+ o), no division
Training and inference compute y = g·x̂ + o with x̂ = (x − μ)·(1/σ) by the same `_normalize`.
"""
import numpy as np

from ..tensor import Function


def _rows(x):
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm expects (N, H, W, C) or (N, C) input, got shape {x.shape}")
    return x.reshape(-1, x.shape[-1])                        # m, C


def _check(x, **params):
    C = x.shape[-1]
    for name, p in params.items():
        if p is not None and p.shape != (C,):
            raise ValueError(f"batch_norm {name} has shape {p.shape}, expected ({C},) for input {x.shape}")


def _normalize(xc, inv_std, weight, bias):
    """x̂ = (x − μ)·(1/σ), y = g·x̂ + o from the centred rows xc = x − μ: the one formula."""
    xhat = xc * inv_std                                      # m, C
    y = xhat * weight if weight is not None else xhat.copy()  # m, C
    if bias is not None:
        y += bias                                            # m, C
    return xhat, y


def batch_norm_forward(x, weight=None, bias=None, eps=1e-5):
    """y = g·(x − μ)/sqrt(σ² + ε) + o, μ and σ² this batch's per-channel mean and biased variance (1/m).

    Without weight/bias, g = 1 and o = 0 (the paper's "baseline 2").
    Shapes: x (N, H, W, C) or (N, C); weight, bias (C,) or None -> y like x.
    cache = (x̂, 1/σ, g, has bias, μ, σ²): what backward needs, and the batch statistics that the
    layer keeps for moving averages and recalibration.
    """
    _check(x, weight=weight, bias=bias)
    xr = _rows(x)                                            # m, C
    mean = xr.mean(axis=0)                                   # C
    xc = xr - mean                                           # m, C
    var = np.einsum("ij,ij->j", xc, xc) / xr.shape[0]        # C   biased variance (1/m)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)     # C
    xhat, y = _normalize(xc, inv_std, weight, bias)          # m, C
    return y.reshape(x.shape), (xhat, inv_std, weight, bias is not None, mean, var)


def batch_norm_backward(dout, cache):
    """With x̂ = (x − μ)/σ, m values per channel and dx̂ = dout·g:

        dx = (1/σ) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))
        dg = Σ dout · x̂,   do = Σ dout               (sums over N, H, W)

    μ and σ depend on every x of the channel; the two mean terms are those paths. (With a
    `.sum()` upstream gradient dx is identically 0 for any g, so a check needs a random one.)
    Shapes: dout like x -> dx like x, dweight (C,) or None, dbias (C,) or None.
    """
    xhat, inv_std, weight, has_bias, _, _ = cache
    d = dout.reshape(xhat.shape)                             # m, C
    dbias = d.sum(axis=0) if has_bias else None              # C
    dweight = np.einsum("ij,ij->j", d, xhat) if weight is not None else None  # C
    dxhat = d * weight if weight is not None else d          # m, C
    m = d.shape[0]
    mean_dxhat = dxhat.sum(axis=0) / m                       # C
    mean_dxhat_xhat = np.einsum("ij,ij->j", dxhat, xhat) / m  # C
    dx = (dxhat - xhat * mean_dxhat_xhat - mean_dxhat) * inv_std  # m, C
    return dx.reshape(dout.shape), dweight, dbias


def batch_norm_inference_forward(x, weight, bias, mean, var, eps=1e-5):
    """y = g·(x − μ)/sqrt(σ² + ε) + o with stored μ, σ² (constants): the training formula.

    Shapes: x (N, H, W, C) or (N, C); weight, bias (C,) or None; mean, var (C,) -> y like x.
    """
    _check(x, weight=weight, bias=bias, mean=mean, var=var)
    xr = _rows(x)                                            # m, C
    mean, var = mean.astype(x.dtype), var.astype(x.dtype)    # C   (stored in float32 or float64)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)     # C   as in batch_norm_forward
    xhat, y = _normalize(xr - mean, inv_std, weight, bias)   # m, C
    return y.reshape(x.shape), (xhat, inv_std, weight, bias is not None)


def batch_norm_inference_backward(dout, cache):
    """μ and σ are constants here: dx = dout·g/σ, dg = Σ dout·x̂, do = Σ dout."""
    xhat, inv_std, weight, has_bias = cache
    d = dout.reshape(xhat.shape)                             # m, C
    dbias = d.sum(axis=0) if has_bias else None              # C
    dweight = np.einsum("ij,ij->j", d, xhat) if weight is not None else None  # C
    dx = (d * weight if weight is not None else d) * inv_std  # m, C
    return dx.reshape(dout.shape), dweight, dbias


def mean_only_bn_forward(x, bias=None):
    """y = x − μ (+ o), μ the batch's per-channel mean  [Salimans & Kingma 2016; P2 variant 6].

    Shapes: x (N, H, W, C) or (N, C); bias (C,) or None -> y like x.  cache = (has bias, μ).
    """
    _check(x, bias=bias)
    xr = _rows(x)                                            # m, C
    mean = xr.mean(axis=0)                                   # C
    y = xr - mean                                            # m, C
    if bias is not None:
        y += bias                                            # m, C
    return y.reshape(x.shape), (bias is not None, mean)


def mean_only_bn_backward(dout, cache):
    """dx = dout − mean(dout) (μ depends on every x of the channel), do = Σ dout."""
    has_bias, _ = cache
    d = _rows(dout)                                          # m, C
    return (d - d.mean(axis=0)).reshape(dout.shape), (d.sum(axis=0) if has_bias else None)


class BatchNorm(Function):
    """Training batch norm: inputs (x, weight, bias), weight and bias optional (None); pass a
    dict as `stats` to receive the batch mean and variance."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5, stats=None):
        out, ctx.cache = batch_norm_forward(x, weight, bias, eps=eps)
        if stats is not None:                                # for moving averages and recalibration
            stats["mean"], stats["var"] = ctx.cache[4], ctx.cache[5]
        return out

    @staticmethod
    def backward(ctx, dout):
        return batch_norm_backward(dout, ctx.cache)


class MeanOnlyBatchNorm(Function):
    """Mean-only batch norm: inputs (x, bias), bias optional; `stats` receives the batch mean."""

    @staticmethod
    def forward(ctx, x, bias, stats=None):
        out, ctx.cache = mean_only_bn_forward(x, bias)
        if stats is not None:
            stats["mean"], stats["var"] = ctx.cache[1], None
        return out

    @staticmethod
    def backward(ctx, dout):
        return mean_only_bn_backward(dout, ctx.cache)


BatchNormInference = Function.from_pair("BatchNormInference", batch_norm_inference_forward,
                                        batch_norm_inference_backward)


def batch_norm(x, weight=None, bias=None, eps=1e-5, mean_only=False, return_stats=False):
    """Batch norm with this batch's per-channel statistics; optional learned weight and bias.

    mean_only: y = x − μ (+ o), no weight. return_stats=True also returns the batch mean and
    biased variance (ndarrays; var is None for mean_only), which BatchNorm2d keeps.
    """
    stats = {}
    if mean_only:
        if weight is not None:
            raise ValueError("mean-only batch norm has no weight (scale)")
        out = MeanOnlyBatchNorm.apply(x, bias, stats=stats)
    else:
        out = BatchNorm.apply(x, weight, bias, eps=eps, stats=stats)
    return (out, stats["mean"], stats["var"]) if return_stats else out


def batch_norm_inference(x, mean, var, weight=None, bias=None, eps=1e-5):
    """Batch norm with stored statistics (eval mode); var None: mean-only, y = x − μ (+ o)."""
    if var is None:
        out = x + (-np.asarray(mean)).astype(x.dtype)
        return out + bias if bias is not None else out
    return BatchNormInference.apply(x, weight, bias, mean=np.asarray(mean), var=np.asarray(var), eps=eps)
