"""Window geometry shared by convolution, pooling and the operation counts: output sizes,
stride and padding arguments, and how many real (non-padding) cells each window covers.

Notation as in tinybin/kernels/im2col_ref.py: input H×W, kernel KH×KW, stride (SH, SW), zero
padding (PT, PB, PL, PR) rows/columns at the top, bottom, left and right.
"""
import numpy as np


def output_size(H, W, KH, KW, SH, SW, PT, PB, PL, PR):
    """(OH, OW) = ((H + PT + PB − KH) // SH + 1, (W + PL + PR − KW) // SW + 1): how many window
    positions fit into the padded input."""
    return (H + PT + PB - KH) // SH + 1, (W + PL + PR - KW) // SW + 1


def as_pair(value, name):
    """An int or an (a, b) pair -> (a, b) of ints >= 1 (strides, pool sizes)."""
    pair = (value, value) if np.ndim(value) == 0 else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def as_padding(padding):
    """An int p (p on every side) or (top, bottom, left, right) -> 4 ints >= 0.

    Asymmetric padding is what TensorFlow's "same" gives a 3×3, stride-2 layer on an even map:
    (0, 1, 0, 1), no row before and one after.
    """
    pads = (padding,) * 4 if np.ndim(padding) == 0 else tuple(padding)
    if len(pads) != 4 or any(int(p) != p or p < 0 for p in pads):
        raise ValueError(f"padding must be an int >= 0 or (top, bottom, left, right), got {padding!r}")
    return tuple(int(p) for p in pads)


def window_counts(H, W, KH, KW, SH, SW, PT, PB, PL, PR):
    """count (OH, OW): how many real (non-padding) input cells each window covers.

    A window's rows and columns are independent, so count = rows_in[oh] * cols_in[ow].
    """
    OH, OW = output_size(H, W, KH, KW, SH, SW, PT, PB, PL, PR)
    top = np.arange(OH) * SH - PT                                  # OH: first input row of each window
    left = np.arange(OW) * SW - PL                                 # OW: first input column
    rows_in = np.clip(top + KH, 0, H) - np.clip(top, 0, H)         # OH
    cols_in = np.clip(left + KW, 0, W) - np.clip(left, 0, W)       # OW
    return np.outer(rows_in, cols_in)                              # OH, OW
