"""Reference batch norm with an optional ReLU after it, as one op: NumPy, to be read.

The pair tinybin/kernels/bn_numba.py compiles (same signatures, tested equal). It is the
composition F.relu(F.batch_norm(x, weight, bias)) of tinybin/ops/norm.py and ops/activations.py
in one forward and one backward, with less saved state: the input x and two per-channel
vectors, instead of x̂ (4 bytes per value), the ReLU mask (1 byte) and the BN output.

Notation: x is viewed as (m, C) rows, m = N·H·W values per channel (free in NHWC);
g = weight (1 if None), o = bias (0 if None), act = ReLU or the identity.

    forward:   μ, σ² = mean and biased variance of each channel,  x̂ = (x − μ)/sqrt(σ² + ε)
               y = act(g·x̂ + o)
    backward:  dz = dout · act'(g·x̂ + o)               (ReLU: 1 where g·x̂ + o > 0, else 0)
               dg = Σ dz·x̂,   do = Σ dz,   dx̂ = g·dz
               dx = (1/σ) · (dx̂ − mean(dx̂) − x̂ · mean(dx̂·x̂))

Reference: Ioffe & Szegedy, "Batch Normalization", ICML 2015, §3 (the backward); the paper's
baseline BN networks put BN → ReLU before every convolution (McDonnell et al. 2019, §2).
"""
import numpy as np


def bn_stats(x):
    """(mean, var) per channel of x (..., C), in float64: var = mean((x − mean)²)."""
    xr = x.reshape(-1, x.shape[-1]).astype(np.float64)   # m, C
    mean = xr.mean(axis=0)                                # C
    return mean, ((xr - mean) ** 2).mean(axis=0)          # C, C


def bn_act_forward(x, weight, bias, eps, relu, y, stats=None):
    """Fill y (x's shape) with act(g·x̂ + o); return (mean, inv_std), both (C,) in x's dtype.

    stats: a dict, if given, receives the batch's "mean" and biased "var" (C,) in float64."""
    mean, var = bn_stats(x)
    if stats is not None:
        stats["mean"], stats["var"] = mean, var
    mean, inv_std = mean.astype(x.dtype), (1.0 / np.sqrt(var + eps)).astype(x.dtype)   # C, C
    z = (x - mean) * inv_std                              # ..., C   x̂
    if weight is not None:
        z = z * weight
    if bias is not None:
        z = z + bias
    y[...] = np.maximum(z, 0) if relu else z
    return mean, inv_std


def bn_act_backward(dout, x, mean, inv_std, weight, bias, relu, dx):
    """Fill dx (x's shape) with dL/dx; return (dweight, dbias), None where absent.

    (The ReLU's derivative at 0 is 0: where g·x̂ + o == 0 no gradient passes.)"""
    C = x.shape[-1]
    xhat = ((x - mean) * inv_std).reshape(-1, C)          # m, C
    d = dout.reshape(-1, C)                               # m, C
    if relu:
        z = xhat * weight if weight is not None else xhat
        z = z + bias if bias is not None else z
        d = d * (z > 0)                                   # m, C   dz
    dweight = np.einsum("ij,ij->j", d, xhat) if weight is not None else None  # C
    dbias = d.sum(axis=0) if bias is not None else None                       # C
    dxhat = d * weight if weight is not None else d                           # m, C
    m = d.shape[0]
    mean_dxhat = dxhat.sum(axis=0) / m                                        # C
    mean_dxhat_xhat = np.einsum("ij,ij->j", dxhat, xhat) / m                  # C
    dx[...] = (inv_std * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat)).reshape(dx.shape)
    return dweight, dbias
