"""Batch normalisation per channel (Ioffe & Szegedy 2015), and the mean-only form P2 takes from its ref. [27] for variant 6 (§IV).

Notation: x is (N, H, W, C) (or (N, C)); statistics are taken per channel over the other axes,
rows = N·H·W values each. x is viewed as a 2-d (rows, C) array: NHWC makes that view free.

Three pairs, one formula:
    batch_norm_forward / _backward            training: μ, σ² of this batch
    batch_norm_inference_forward / _backward  inference: stored μ, σ² (constants)
    mean_only_bn_forward / _backward          y = x − μ (+ o), no division
Training and inference compute y = g·x̂ + o with x̂ = (x − μ)·(1/σ) by the same `normalize`;
the fused BN (+ ReLU) reference, kernels/bn_ref.py, is this forward and backward around a ReLU.
The caches are named tuples; the batch's statistics are part of a training cache, and the
Functions return them beside the output (`has_aux`), for the layer's moving averages.
"""
from typing import NamedTuple

import numpy as np

from ..tensor import Function


class BatchStatistics(NamedTuple):
    """A batch's per-channel mean and biased variance (C,); var is None for mean-only BN."""
    mean: np.ndarray
    var: np.ndarray | None


class BatchNormCache(NamedTuple):
    xhat: np.ndarray            # rows, C   the normalised input
    inv_std: np.ndarray         # C         1/σ in x's dtype
    weight: np.ndarray | None   # C         g (None: 1)
    has_bias: bool
    statistics: BatchStatistics | None   # None in inference


class MeanOnlyCache(NamedTuple):
    has_bias: bool
    statistics: BatchStatistics


def _rows(x):
    if x.ndim not in (2, 4):
        raise ValueError(f"batch_norm expects (N, H, W, C) or (N, C) input, got shape {x.shape}")
    return x.reshape(-1, x.shape[-1])                        # rows, C


def _check(x, **params):
    C = x.shape[-1]
    for name, p in params.items():
        if p is not None and p.shape != (C,):
            raise ValueError(f"batch_norm {name} has shape {p.shape}, expected ({C},) for input {x.shape}")


def normalize(xc, inv_std, weight, bias):
    """x̂ = (x − μ)·(1/σ), y = g·x̂ + o from the centred rows xc = x − μ: the one formula."""
    xhat = xc * inv_std                                      # rows, C
    y = xhat * weight if weight is not None else xhat.copy()  # rows, C
    if bias is not None:
        y += bias                                            # rows, C
    return xhat, y


def batch_norm_forward(x, weight=None, bias=None, eps=1e-5):
    """y = g·(x − μ)/sqrt(σ² + ε) + o, μ and σ² this batch's per-channel mean and biased variance (1/rows).

    Without weight/bias, g = 1 and o = 0 (the paper's "baseline 2").
    Shapes: x (N, H, W, C) or (N, C); weight, bias (C,) or None -> y like x.
    cache: BatchNormCache, what backward needs, and the batch's statistics (μ, σ² in x's dtype)
    that the layer keeps for moving averages and recalibration.
    """
    _check(x, weight=weight, bias=bias)
    xr = _rows(x)                                            # rows, C
    mean = xr.mean(axis=0)                                   # C
    xc = xr - mean                                           # rows, C
    var = np.einsum("ij,ij->j", xc, xc) / xr.shape[0]        # C   biased variance (1/rows)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)     # C
    xhat, y = normalize(xc, inv_std, weight, bias)           # rows, C
    return y.reshape(x.shape), BatchNormCache(xhat, inv_std, weight, bias is not None, BatchStatistics(mean, var))


def batch_norm_backward(dout, cache):
    """With x̂ = (x − μ)/σ, rows values per channel and dx̂ = dout·g:

        dx = (1/σ) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ · x̂))
        dg = Σ dout · x̂,   do = Σ dout               (sums over N, H, W)

    μ and σ depend on every x of the channel; the two mean terms are those paths. (With a
    `.sum()` upstream gradient dx is identically 0 for any g, so a check needs a random one.)
    Shapes: dout like x -> dx like x, dweight (C,) or None, dbias (C,) or None.
    """
    xhat, inv_std, weight = cache.xhat, cache.inv_std, cache.weight
    d = dout.reshape(xhat.shape)                             # rows, C
    dbias = d.sum(axis=0) if cache.has_bias else None        # C
    dweight = np.einsum("ij,ij->j", d, xhat) if weight is not None else None  # C
    dxhat = d * weight if weight is not None else d          # rows, C
    rows = d.shape[0]
    mean_dxhat = dxhat.sum(axis=0) / rows                    # C
    mean_dxhat_xhat = np.einsum("ij,ij->j", dxhat, xhat) / rows  # C
    dx = (dxhat - xhat * mean_dxhat_xhat - mean_dxhat) * inv_std  # rows, C
    return dx.reshape(dout.shape), dweight, dbias


def batch_norm_inference_forward(x, weight, bias, mean, var, eps=1e-5):
    """y = g·(x − μ)/sqrt(σ² + ε) + o with stored μ, σ² (constants): the training formula.

    Shapes: x (N, H, W, C) or (N, C); weight, bias (C,) or None; mean, var (C,) -> y like x.
    """
    _check(x, weight=weight, bias=bias, mean=mean, var=var)
    xr = _rows(x)                                            # rows, C
    mean, var = mean.astype(x.dtype), var.astype(x.dtype)    # C   (stored in float32 or float64)
    inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype)     # C   as in batch_norm_forward
    xhat, y = normalize(xr - mean, inv_std, weight, bias)    # rows, C
    return y.reshape(x.shape), BatchNormCache(xhat, inv_std, weight, bias is not None, None)


def batch_norm_inference_backward(dout, cache):
    """μ and σ are constants here: dx = dout·g/σ, dg = Σ dout·x̂, do = Σ dout."""
    xhat, inv_std, weight = cache.xhat, cache.inv_std, cache.weight
    d = dout.reshape(xhat.shape)                             # rows, C
    dbias = d.sum(axis=0) if cache.has_bias else None        # C
    dweight = np.einsum("ij,ij->j", d, xhat) if weight is not None else None  # C
    dx = (d * weight if weight is not None else d) * inv_std  # rows, C
    return dx.reshape(dout.shape), dweight, dbias


def mean_only_bn_forward(x, bias=None):
    """y = x − μ (+ o), μ the batch's per-channel mean  [Salimans & Kingma 2016; P2 variant 6].

    Shapes: x (N, H, W, C) or (N, C); bias (C,) or None -> y like x.  cache: MeanOnlyCache.
    """
    _check(x, bias=bias)
    xr = _rows(x)                                            # rows, C
    mean = xr.mean(axis=0)                                   # C
    y = xr - mean                                            # rows, C
    if bias is not None:
        y += bias                                            # rows, C
    return y.reshape(x.shape), MeanOnlyCache(bias is not None, BatchStatistics(mean, None))


def mean_only_bn_backward(dout, cache):
    """dx = dout − mean(dout) (μ depends on every x of the channel), do = Σ dout."""
    d = _rows(dout)                                          # rows, C
    return (d - d.mean(axis=0)).reshape(dout.shape), (d.sum(axis=0) if cache.has_bias else None)


class BatchNorm(Function):
    """Training batch norm: inputs (x, weight, bias), weight and bias optional (None);
    apply returns (output, BatchStatistics)."""

    has_aux = True

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        out, ctx.cache = batch_norm_forward(x, weight, bias, eps=eps)
        return out, ctx.cache.statistics

    @staticmethod
    def backward(ctx, dout):
        return batch_norm_backward(dout, ctx.cache)


class MeanOnlyBatchNorm(Function):
    """Mean-only batch norm: inputs (x, bias), bias optional; apply returns (output, BatchStatistics)."""

    has_aux = True

    @staticmethod
    def forward(ctx, x, bias):
        out, ctx.cache = mean_only_bn_forward(x, bias)
        return out, ctx.cache.statistics

    @staticmethod
    def backward(ctx, dout):
        return mean_only_bn_backward(dout, ctx.cache)


BatchNormInference = Function.from_pair("BatchNormInference", batch_norm_inference_forward,
                                        batch_norm_inference_backward)


def batch_norm(x, weight=None, bias=None, eps=1e-5, mean_only=False, return_stats=False):
    """Batch norm with this batch's per-channel statistics; optional learned weight and bias.

    mean_only: y = x − μ (+ o), no weight. return_stats=True returns (out, BatchStatistics):
    the batch mean and biased variance (var None for mean_only), which BatchNorm2d keeps.
    """
    if mean_only:
        if weight is not None:
            raise ValueError("mean-only batch norm has no weight (scale)")
        out, statistics = MeanOnlyBatchNorm.apply(x, bias)
    else:
        out, statistics = BatchNorm.apply(x, weight, bias, eps=eps)
    return (out, statistics) if return_stats else out


def batch_norm_inference(x, mean, var, weight=None, bias=None, eps=1e-5):
    """Batch norm with stored statistics (eval mode); var None: mean-only, y = x − μ (+ o)."""
    if var is None:
        out = x + (-np.asarray(mean)).astype(x.dtype)
        return out + bias if bias is not None else out
    return BatchNormInference.apply(x, weight, bias, mean=np.asarray(mean), var=np.asarray(var), eps=eps)
