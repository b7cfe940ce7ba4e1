"""Statistics of gradient samples: exact pooling over steps, kurtosis, tail numbers, the CCDF."""
from __future__ import annotations

import math

import numpy as np


def power_sums(g) -> dict:
    """n and Σg, Σg², Σg³, Σg⁴ in float64: adding them over steps pools the samples exactly."""
    g = np.asarray(g, np.float64).ravel()
    g2 = g * g
    return {"n": int(g.size), "s1": float(g.sum()), "s2": float(g2.sum()),
            "s3": float((g2 * g).sum()), "s4": float((g2 * g2).sum())}


def moments_from_sums(n, s1, s2, s3, s4):
    """(mean, std, Pearson kurtosis) from power sums; kurtosis = m4 / m2², 3 for a Gaussian.

    Central moments from raw ones: m2 = E g² − μ², m4 = E g⁴ − 4μ E g³ + 6μ² E g² − 3μ⁴.
    """
    if n == 0:
        return math.nan, math.nan, math.nan
    mu, e2, e3, e4 = s1 / n, s2 / n, s3 / n, s4 / n
    m2 = max(e2 - mu * mu, 0.0)
    m4 = e4 - 4 * mu * e3 + 6 * mu * mu * e2 - 3 * mu ** 4
    kurt = m4 / (m2 * m2) if m2 > 0 else math.nan
    return mu, math.sqrt(m2), kurt


def kurtosis(x) -> float:
    """Pearson kurtosis E[(x−μ)⁴] / σ⁴ (not the excess): 3 for a Gaussian, 1.8 for a uniform,
    larger when the tails are heavier."""
    x = np.asarray(x, np.float64).ravel()
    d = x - x.mean()
    m2 = np.mean(d * d)
    return float(np.mean(d ** 4) / (m2 * m2)) if m2 > 0 else math.nan


def tail_stats(g) -> dict:
    """std, kurtosis, 99.9th percentile and max of |g| for one step, plus the power sums."""
    a = np.abs(np.asarray(g).ravel())
    sums = power_sums(g)
    _, std, kurt = moments_from_sums(**sums)
    k = min(int(math.ceil(0.999 * a.size)) - 1, a.size - 1)
    p999 = float(np.partition(a, k)[k]) if a.size else math.nan   # the value 99.9 % lie at or below
    return {"std": std, "kurtosis": kurt, "p999": p999, "max": float(a.max()) if a.size else math.nan, **sums}


def pooled(records, point, first=0, last=None) -> dict:
    """std and kurtosis of `point`'s gradient over all values of the steps first ≤ step < last,
    pooled exactly from the per-step power sums."""
    keys = ("n", "s1", "s2", "s3", "s4")
    total = dict.fromkeys(keys, 0.0)
    for r in records:
        if r["step"] >= first and (last is None or r["step"] < last) and point in r.get("grad", {}):
            for k in keys:
                total[k] += r["grad"][point][k]
    total["n"] = int(total["n"])
    mean, std, kurt = moments_from_sums(**total)
    return {"n": total["n"], "mean": mean, "std": std, "kurtosis": kurt}


def ccdf(values):
    """(x, P(|g| > x)) at every distinct |value|, ascending; the largest value (P = 0) is left
    out so the curve fits on log axes."""
    a = np.sort(np.abs(np.asarray(values, np.float64).ravel()))
    x = np.unique(a)
    p = 1.0 - np.searchsorted(a, x, side="right") / a.size
    keep = p > 0
    return x[keep], p[keep]
