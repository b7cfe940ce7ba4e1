"""Fused batch norm (+ ReLU) forward and backward, compiled by Numba.

Same signatures and results (to rounding) as `bn_ref.py` (read that first). What these rely on:

- x as (m, C) rows, C contiguous (NHWC): every loop runs over channels innermost, vectorised.
- Statistics in one pass over x: per chunk of rows, sums of (x − K) and (x − K)² in float64,
  shifted by K = the first row, so that the variance does not cancel catastrophically when
  |mean| >> std (the textbook E[x²] − E[x]² does). The chunks' sums are added afterwards.
- The backward in two passes: one for the per-channel sums (Σ dz, Σ dz·x̂), one writing dx.
  x̂ and the ReLU mask are recomputed from x, μ and 1/σ instead of being stored.
- Work split for threads: chunks of rows, each writing its own partial sums or its own rows.
  PARALLEL is the im2col kernels' setting (`im2col_numba.PARALLEL`, see tinybin/threads.py).
"""
import numpy as np
from numba import njit, prange

from . import im2col_numba

CHUNKS = 32  # row chunks: work units for threads, and partial sums kept per chunk


@njit(cache=True)
def _chunk(m, k, chunks):
    return k * m // chunks, (k + 1) * m // chunks


@njit(parallel=True, cache=True)
def _stats_parallel(xr, chunks):
    m, C = xr.shape
    s1 = np.zeros((chunks, C))
    s2 = np.zeros((chunks, C))
    for k in prange(chunks):                     # disjoint rows of s1, s2 per chunk
        lo, hi = _chunk(m, k, chunks)
        for i in range(lo, hi):
            for c in range(C):
                v = xr[i, c] - xr[0, c]
                s1[k, c] += v
                s2[k, c] += v * v
    return s1, s2


@njit(parallel=True, cache=True)
def _forward_parallel(xr, yr, mean, scale, shift, relu, chunks):
    m, C = xr.shape
    for k in prange(chunks):
        lo, hi = _chunk(m, k, chunks)
        for i in range(lo, hi):
            for c in range(C):
                z = (xr[i, c] - mean[c]) * scale[c] + shift[c]
                yr[i, c] = max(z, 0) if relu else z


@njit(inline="always", cache=True)
def _xhat_dz(dout, x, mean, inv_std, g, o, relu):
    """x̂ and the gradient reaching the BN output (zero where the fused ReLU was off)."""
    xhat = (x - mean) * inv_std
    return xhat, (0.0 if relu and xhat * g + o <= 0 else dout)


@njit(parallel=True, cache=True)
def _backward_sums_parallel(dr, xr, mean, inv_std, g, o, relu, chunks):
    m, C = xr.shape
    sd = np.zeros((chunks, C))                   # Σ dz
    sdx = np.zeros((chunks, C))                  # Σ dz·x̂
    for k in prange(chunks):
        lo, hi = _chunk(m, k, chunks)
        for i in range(lo, hi):
            for c in range(C):
                xhat, dz = _xhat_dz(dr[i, c], xr[i, c], mean[c], inv_std[c], g[c], o[c], relu)
                sd[k, c] += dz
                sdx[k, c] += dz * xhat
    return sd, sdx


@njit(parallel=True, cache=True)
def _backward_dx_parallel(dr, xr, dxr, mean, inv_std, g, o, relu, mean_dxhat, mean_dxhat_xhat, chunks):
    m, C = xr.shape
    for k in prange(chunks):
        lo, hi = _chunk(m, k, chunks)
        for i in range(lo, hi):
            for c in range(C):
                xhat, dz = _xhat_dz(dr[i, c], xr[i, c], mean[c], inv_std[c], g[c], o[c], relu)
                dxr[i, c] = inv_std[c] * (g[c] * dz - mean_dxhat[c] - xhat * mean_dxhat_xhat[c])


# Serial twins from the same bodies: Numba runs prange as range when parallel=False.
_stats_serial = njit(cache=True)(_stats_parallel.py_func)
_forward_serial = njit(cache=True)(_forward_parallel.py_func)
_backward_sums_serial = njit(cache=True)(_backward_sums_parallel.py_func)
_backward_dx_serial = njit(cache=True)(_backward_dx_parallel.py_func)


def _pick(parallel, par, ser):
    return par if (im2col_numba.PARALLEL if parallel is None else parallel) else ser


def _g_o(weight, bias, C, dtype):
    g = np.ones(C, dtype) if weight is None else np.ascontiguousarray(weight, dtype)
    o = np.zeros(C, dtype) if bias is None else np.ascontiguousarray(bias, dtype)
    return g, o


def bn_stats(x, parallel=None):
    """(mean, var) per channel of x (..., C), in float64, in one pass (shifted sums)."""
    xr = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
    m = xr.shape[0]
    s1, s2 = _pick(parallel, _stats_parallel, _stats_serial)(xr, min(CHUNKS, m))
    s1, s2 = s1.sum(axis=0), s2.sum(axis=0)
    mean_shifted = s1 / m
    return xr[0].astype(np.float64) + mean_shifted, np.maximum(s2 / m - mean_shifted ** 2, 0.0)


def bn_act_forward(x, weight, bias, eps, relu, y, parallel=None, stats=None):
    """Fill y (x's shape) with act(g·x̂ + o); return (mean, inv_std), both (C,) in x's dtype.

    stats: a dict, if given, receives the batch's "mean" and biased "var" (C,) in float64."""
    C = x.shape[-1]
    mean, var = bn_stats(x, parallel)
    if stats is not None:
        stats["mean"], stats["var"] = mean, var
    mean, inv_std = mean.astype(x.dtype), (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    g, o = _g_o(weight, bias, C, x.dtype)
    xr = np.ascontiguousarray(x).reshape(-1, C)
    _pick(parallel, _forward_parallel, _forward_serial)(xr, y.reshape(-1, C), mean, inv_std * g, o, relu,
                                                        min(CHUNKS, xr.shape[0]))
    return mean, inv_std


def bn_act_backward(dout, x, mean, inv_std, weight, bias, relu, dx, parallel=None):
    """Fill dx (x's shape) with dL/dx; return (dweight, dbias), None where absent."""
    C = x.shape[-1]
    g, o = _g_o(weight, bias, C, x.dtype)
    xr = np.ascontiguousarray(x).reshape(-1, C)
    dr = np.ascontiguousarray(dout, dtype=x.dtype).reshape(-1, C)
    m, chunks = xr.shape[0], min(CHUNKS, xr.shape[0])
    sd, sdx = _pick(parallel, _backward_sums_parallel, _backward_sums_serial)(dr, xr, mean, inv_std, g, o,
                                                                             relu, chunks)
    sd, sdx = sd.sum(axis=0), sdx.sum(axis=0)                     # Σ dz, Σ dz·x̂   (C, float64)
    mean_dxhat, mean_dxhat_xhat = (g * sd / m).astype(x.dtype), (g * sdx / m).astype(x.dtype)
    _pick(parallel, _backward_dx_parallel, _backward_dx_serial)(dr, xr, dx.reshape(-1, C), mean, inv_std, g, o,
                                                                relu, mean_dxhat, mean_dxhat_xhat, chunks)
    dweight = sdx.astype(x.dtype) if weight is not None else None
    dbias = sd.astype(x.dtype) if bias is not None else None
    return dweight, dbias
