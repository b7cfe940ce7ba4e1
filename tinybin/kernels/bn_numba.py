"""Fused batch norm (+ ReLU) forward and backward, compiled by Numba.

Same signatures and results (to rounding) as `bn_ref.py` (read that first). What these rely on:

- x as (rows, C), C contiguous (NHWC): every loop runs over channels innermost, vectorised.
- Statistics in one pass over x: per chunk of rows, sums of (x − K) and (x − K)² in float64,
  shifted by K = the first row, so that the variance does not cancel catastrophically when
  |mean| >> std (the textbook E[x²] − E[x]² does). The chunks' sums are added afterwards.
- The backward in two passes: one for the per-channel sums (Σ dz, Σ dz·x̂), one writing dx.
  x̂ and the ReLU mask are recomputed from x, μ and 1/σ instead of being stored.
- Work split for threads: chunks of rows, each writing its own partial sums or its own rows.
  Each loop does a range of chunks, compiled once per dtype; `workers.split` runs it on one
  thread or shares the chunks among threads by the `parallel` setting.
"""
import numpy as np
from numba import njit

from ..ops.norm import BatchStatistics
from .workers import split

CHUNKS = 32  # row chunks: work units for threads, and partial sums kept per chunk


@njit(cache=True, inline="always")
def _chunk(rows, k, chunks):
    return k * rows // chunks, (k + 1) * rows // chunks


@njit(cache=True, nogil=True)
def _stats(xr, chunks, s1, s2, lo, hi):
    """Chunks k, lo <= k < hi: s1[k], s2[k] = the sums of (x − K) and (x − K)² over its rows."""
    rows, C = xr.shape
    for k in range(lo, hi):                      # disjoint rows of s1, s2 per chunk
        start, stop = _chunk(rows, k, chunks)
        for i in range(start, stop):
            for c in range(C):
                v = xr[i, c] - xr[0, c]
                s1[k, c] += v
                s2[k, c] += v * v


@njit(cache=True, nogil=True)
def _forward(xr, yr, mean, scale, shift, relu, chunks, lo, hi):
    rows, C = xr.shape
    for k in range(lo, hi):
        start, stop = _chunk(rows, k, chunks)
        for i in range(start, stop):
            for c in range(C):
                z = (xr[i, c] - mean[c]) * scale[c] + shift[c]
                yr[i, c] = max(z, 0) if relu else z


@njit(inline="always", cache=True)
def _xhat_dz(dout, x, mean, inv_std, g, o, relu):
    """x̂ and the gradient reaching the BN output (zero where the fused ReLU was off)."""
    xhat = (x - mean) * inv_std
    return xhat, (0.0 if relu and xhat * g + o <= 0 else dout)


@njit(cache=True, nogil=True)
def _backward_sums(dr, xr, mean, inv_std, g, o, relu, chunks, sum_dz, sum_dz_xhat, lo, hi):
    """Chunks k, lo <= k < hi: sum_dz[k] = Σ dz, sum_dz_xhat[k] = Σ dz·x̂ over its rows."""
    rows, C = xr.shape
    for k in range(lo, hi):
        start, stop = _chunk(rows, k, chunks)
        for i in range(start, stop):
            for c in range(C):
                xhat, dz = _xhat_dz(dr[i, c], xr[i, c], mean[c], inv_std[c], g[c], o[c], relu)
                sum_dz[k, c] += dz
                sum_dz_xhat[k, c] += dz * xhat


@njit(cache=True, nogil=True)
def _backward_dx(dr, xr, dxr, mean, inv_std, g, o, relu, mean_dxhat, mean_dxhat_xhat, chunks, lo, hi):
    rows, C = xr.shape
    for k in range(lo, hi):
        start, stop = _chunk(rows, k, chunks)
        for i in range(start, stop):
            for c in range(C):
                xhat, dz = _xhat_dz(dr[i, c], xr[i, c], mean[c], inv_std[c], g[c], o[c], relu)
                dxr[i, c] = inv_std[c] * (g[c] * dz - mean_dxhat[c] - xhat * mean_dxhat_xhat[c])


def _weight_and_bias(weight, bias, C, dtype):
    """g and o as arrays (C,): 1 and 0 where the layer has none."""
    g = np.ones(C, dtype) if weight is None else np.ascontiguousarray(weight, dtype)
    o = np.zeros(C, dtype) if bias is None else np.ascontiguousarray(bias, dtype)
    return g, o


def bn_stats(x):
    """BatchStatistics (mean, biased var) per channel of x (..., C), in float64, in one pass (shifted sums)."""
    xr = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
    rows = xr.shape[0]
    chunks = min(CHUNKS, rows)
    s1, s2 = np.zeros((chunks, xr.shape[1])), np.zeros((chunks, xr.shape[1]))
    split(_stats, chunks, xr, chunks, s1, s2)
    s1, s2 = s1.sum(axis=0), s2.sum(axis=0)
    mean_shifted = s1 / rows
    return BatchStatistics(xr[0].astype(np.float64) + mean_shifted, np.maximum(s2 / rows - mean_shifted ** 2, 0.0))


def bn_act_forward(x, weight, bias, eps, relu, y):
    """Fill y (x's shape) with act(g·x̂ + o); return (mean, inv_std, statistics): μ and 1/σ (C,)
    in x's dtype for the backward, and the batch's BatchStatistics in float64."""
    C = x.shape[-1]
    statistics = bn_stats(x)
    mean, inv_std = statistics.mean.astype(x.dtype), (1.0 / np.sqrt(statistics.var + eps)).astype(x.dtype)
    g, o = _weight_and_bias(weight, bias, C, x.dtype)
    xr = np.ascontiguousarray(x).reshape(-1, C)
    chunks = min(CHUNKS, xr.shape[0])
    split(_forward, chunks, xr, y.reshape(-1, C), mean, inv_std * g, o, relu, chunks)
    return mean, inv_std, statistics


def bn_act_backward(dout, x, mean, inv_std, weight, bias, relu, dx):
    """Fill dx (x's shape) with dL/dx; return (dweight, dbias), None where absent."""
    C = x.shape[-1]
    g, o = _weight_and_bias(weight, bias, C, x.dtype)
    xr = np.ascontiguousarray(x).reshape(-1, C)
    dr = np.ascontiguousarray(dout, dtype=x.dtype).reshape(-1, C)
    rows, chunks = xr.shape[0], min(CHUNKS, xr.shape[0])
    sum_dz, sum_dz_xhat = np.zeros((chunks, C)), np.zeros((chunks, C))      # Σ dz, Σ dz·x̂ per chunk
    split(_backward_sums, chunks, dr, xr, mean, inv_std, g, o, relu, chunks, sum_dz, sum_dz_xhat)
    sum_dz, sum_dz_xhat = sum_dz.sum(axis=0), sum_dz_xhat.sum(axis=0)      # Σ dz, Σ dz·x̂   (C, float64)
    mean_dxhat, mean_dxhat_xhat = (g * sum_dz / rows).astype(x.dtype), (g * sum_dz_xhat / rows).astype(x.dtype)
    split(_backward_dx, chunks, dr, xr, dx.reshape(-1, C), mean, inv_std, g, o, relu, mean_dxhat, mean_dxhat_xhat,
          chunks)
    dweight = sum_dz_xhat.astype(x.dtype) if weight is not None else None
    dbias = sum_dz.astype(x.dtype) if bias is not None else None
    return dweight, dbias
