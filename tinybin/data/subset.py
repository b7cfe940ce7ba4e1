"""Class-balanced subsets and stratified train/validation splits, both seeded.

Students train on small CIFAR subsets on a laptop; a subset that keeps every class equally
represented makes accuracies comparable across runs and subset sizes. Both functions return
examples in their original order (the batch iterator shuffles), so a subset is reproducible
from ``seed`` alone and independent of how it is later batched.
"""

from __future__ import annotations

import numpy as np

__all__ = ["balanced_subset", "train_val_split", "stratified_sample"]


def _largest_remainder(quotas, total, rng) -> np.ndarray:
    """Integers close to ``quotas`` that sum exactly to ``total``.

    Each gets the floor of its quota; the leftover units go to the largest fractional parts,
    ties broken at random (seeded) so no class is always favoured.
    """
    counts = np.floor(quotas).astype(np.int64)
    left = int(total - counts.sum())
    if left > 0:
        frac = quotas - counts
        order = np.lexsort((rng.random(len(quotas)), -frac))  # by -frac, then random
        counts[order[:left]] += 1
    return counts


def balanced_subset(x, y, n_per_class=None, n_total=None, seed=0):
    """A class-balanced random subset ``(x_sub, y_sub)``, in original order.

    Give exactly one of ``n_per_class`` (that many of every class) or ``n_total``; if
    ``n_total`` is not a multiple of the number of classes K, every class gets
    ``n_total // K`` and the ``n_total % K`` extra examples go to classes chosen at random.
    Classes are the distinct values of ``y``. Raises ValueError if a class is too small.
    """
    y = np.asarray(y)
    if (n_per_class is None) == (n_total is None):
        raise ValueError("give exactly one of n_per_class or n_total")
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    K = len(classes)
    if n_per_class is not None:
        counts = np.full(K, int(n_per_class), dtype=np.int64)
    else:
        counts = _largest_remainder(np.full(K, n_total / K), int(n_total), rng)
    chosen = []
    for label, n in zip(classes, counts):
        members = np.flatnonzero(y == label)
        if n > len(members):
            raise ValueError(f"class {label} has {len(members)} examples; {n} were asked for")
        chosen.append(rng.choice(members, size=n, replace=False))
    index = np.sort(np.concatenate(chosen))
    return x[index], y[index]


def train_val_split(x, y, val_fraction=0.1, n_val=None, seed=0, stratify=True):
    """Split into ``(x_train, y_train), (x_val, y_val)``, seeded; stratified by default.

    The validation set holds ``n_val`` examples if given, else ``round(val_fraction * N)``.
    Stratified: each class contributes in proportion to its size (largest-remainder rounding,
    so the total is exact); for a balanced training set the validation set is balanced too.
    ``stratify=False`` draws the validation examples uniformly at random instead.
    Both parts keep the original order.
    """
    y = np.asarray(y)
    N = len(y)
    n_val = int(round(val_fraction * N)) if n_val is None else int(n_val)
    if not 0 <= n_val <= N:
        raise ValueError(f"n_val={n_val} is outside 0..{N}")
    rng = np.random.default_rng(seed)
    if stratify:
        classes, sizes = np.unique(y, return_counts=True)
        counts = _largest_remainder(sizes * (n_val / N), n_val, rng)
        val = np.concatenate([
            rng.choice(np.flatnonzero(y == label), size=n, replace=False)
            for label, n in zip(classes, counts)
        ])
    else:
        val = rng.choice(N, size=n_val, replace=False)
    is_val = np.zeros(N, dtype=bool)
    is_val[val] = True
    return (x[~is_val], y[~is_val]), (x[is_val], y[is_val])


def stratified_sample(x, y, n, seed=0):
    """``n`` examples ``(x_s, y_s)``, every class in proportion to its size, seeded, in original
    order; all of them if ``n`` is None or at least their number.

    For test subsets: "the first n" would do for the shuffled official CIFAR test batch, but
    of an image folder, whose files come class by class, it would be a single class.
    """
    if n is None or n >= len(y):
        return x, y
    return train_val_split(x, y, n_val=n, seed=seed)[1]

