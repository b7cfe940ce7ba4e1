"""Training-time augmentation as P2 §III.A describes it ("standard" methods as in its ref. [10], plus
cutout of 18 pixels: DeVries & Taylor 2017); the flip, pad and crop details follow the authors' code.
Vectorised over a batch.

In order, on uint8 NHWC images:

1. horizontal flip with probability 0.5;
2. pad 4 pixels on each side with uniform random integers 0..255 (independently per pixel and
   channel), then crop a random 32x32 window (H x W in general): offsets uniform in 0..8;
3. cutout: one 18x18 patch on every image, filled with uniform random integers 0..255 per
   pixel and channel. The patch's top-left corner (top, left) is uniform over
   {-17, ..., 31} x {-17, ..., 31} ({-(s-1), ..., H-1} for size s), independently, and the patch
   is clipped at the border. That is cutout's "corner uniform so the patch may hang over the
   border": at the extremes only one row or column of the patch is visible, and every pixel of
   the image is covered with the same probability, (s/(H+s-1)) * (s/(W+s-1)) = (18/49)^2 ≈ 0.135.

Random padding and random cutout fills (rather than zeros) keep the image statistics unchanged,
which matters when the network's input normalisation is a batch-norm layer.
"""

from __future__ import annotations

import numpy as np

__all__ = ["augment"]


def _random_uint8(rng, shape):
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _flip(x, rng):
    """Mirror each image left-right with probability 0.5."""
    mirror = rng.random(len(x)) < 0.5  # N
    out = x.copy()  # N,H,W,C
    out[mirror] = x[mirror, :, ::-1]
    return out


def _pad_crop(x, pad, rng):
    """Pad ``pad`` random pixels on every side, then take a random H x W window."""
    N, H, W, C = x.shape
    padded = _random_uint8(rng, (N, H + 2 * pad, W + 2 * pad, C))  # N,H+2p,W+2p,C
    padded[:, pad:pad + H, pad:pad + W] = x  # only the border keeps its random values
    dy = rng.integers(0, 2 * pad + 1, size=N)  # N, window top in the padded image
    dx = rng.integers(0, 2 * pad + 1, size=N)  # N, window left
    # Every H x W window of every image, as a view (no copy): N, 2p+1, 2p+1, C, H, W
    windows = np.lib.stride_tricks.sliding_window_view(padded, (H, W), axis=(1, 2))
    out = windows[np.arange(N), dy, dx]  # N,C,H,W: picks one window per image
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1))  # N,H,W,C


def _cutout(x, size, rng):
    """Overwrite one size x size patch per image (clipped at the border) with random pixels."""
    N, H, W, C = x.shape
    top = rng.integers(-(size - 1), H, size=N)  # N, uniform over {-(s-1), ..., H-1}
    left = rng.integers(-(size - 1), W, size=N)  # N
    r, c = np.arange(H), np.arange(W)
    in_rows = (r >= top[:, None]) & (r < top[:, None] + size)  # N,H
    in_cols = (c >= left[:, None]) & (c < left[:, None] + size)  # N,W
    patch = in_rows[:, :, None] & in_cols[:, None, :]  # N,H,W
    x[patch] = _random_uint8(rng, (int(patch.sum()), C))
    return x


def augment(x, rng=None, flip=True, crop_pad=4, cutout=18):
    """Augment a batch of uint8 NHWC images as in P2 §III.A; returns a new uint8 array.

    Args:
        x: uint8 (N, H, W, C). Not modified.
        rng: a ``np.random.Generator``, or a seed for ``np.random.default_rng``. The same
            generator state gives the same output: random numbers are drawn in the fixed order
            flip decisions; padding (one (N, H+2p, W+2p, C) draw whose centre the image
            then overwrites); crop offsets (rows, columns); cutout corners (rows, columns);
            cutout fills.
        flip: mirror left-right with probability 0.5 (False disables).
        crop_pad: pixels of random padding per side before the random H x W crop;
            the crop offsets are uniform in 0..2*crop_pad (0 or None disables). Paper: 4.
        cutout: side of the square patch (0 or None disables). Paper: 18. The top-left corner
            is uniform over {-(cutout-1), ..., H-1} x {-(cutout-1), ..., W-1}, so the patch may
            hang over any border, and is clipped there.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"augment expects uint8 (N, H, W, C) images, got {x.dtype} {x.shape}")
    rng = np.random.default_rng(rng)
    out = x
    if flip:
        out = _flip(out, rng)
    if crop_pad:
        out = _pad_crop(out, int(crop_pad), rng)
    if out is x:
        out = x.copy()  # cutout writes in place; never into the caller's array
    if cutout:
        out = _cutout(out, int(cutout), rng)
    return out
