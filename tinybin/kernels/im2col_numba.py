"""Fast im2col / col2im for NHWC convolution, compiled by Numba.

Same signatures, same results as `im2col_ref.py` (read that first; the Notation block there
defines N, H, W, C, KH, KW, SH, SW, PT, PB, PL, PR, OH, OW). What these versions rely on:

- NHWC layout: the C values of one input cell are contiguous, and so are the C slots they fill
  in a column row, so the innermost loop is a unit-stride copy the compiler vectorises.
- Row-major columns (N*OH*OW, KH*KW*C): im2col writes each row once, front to back.
- col2im as a *gather*: instead of scattering every column entry into dx with `+=` (two
  windows would then race on one cell), each dx cell visits the at most KH*KW column entries
  that were copied from it and sums them. Every dx cell is written by exactly one loop
  iteration, so `prange` is race-free and dx needs no separate zero-fill pass.
- `prange` over (image, row) pairs: writes are disjoint, and there is parallel work even for a
  single image.
- The caller passes the output buffer, so a workspace can be reused across calls (allocating
  a fresh, page-faulting column matrix on every call costs far more than filling it).
- `cache=True`: the machine code is stored in `__pycache__` (or NUMBA_CACHE_DIR) and the next
  process loads it instead of compiling. Each dtype (float32, float64) compiles once.

Run with NUMBA_DISABLE_JIT=1 to step through these loops as ordinary Python.
"""
from numba import njit, prange


@njit(parallel=True, cache=True)
def im2col(x, cols, KH, KW, SH, SW, PT, PB, PL, PR):
    """Fill cols (N*OH*OW, KH*KW*C) with the windows of x (N, H, W, C); return cols."""
    N, H, W, C = x.shape
    OH = (H + PT + PB - KH) // SH + 1
    OW = (W + PL + PR - KW) // SW + 1
    for nr in prange(N * OH):                  # one output row of one image per iteration
        n = nr // OH
        oh = nr - n * OH
        for ow in range(OW):
            row = nr * OW + ow                 # == (n*OH + oh)*OW + ow
            for i in range(KH):
                h = oh * SH - PT + i
                for j in range(KW):
                    w = ow * SW - PL + j
                    base = (i * KW + j) * C
                    if 0 <= h < H and 0 <= w < W:
                        for c in range(C):
                            cols[row, base + c] = x[n, h, w, c]
                    else:                      # a padding cell
                        for c in range(C):
                            cols[row, base + c] = 0
    return cols


@njit(parallel=True, cache=True)
def col2im(cols, dx, KH, KW, SH, SW, PT, PB, PL, PR):
    """Fill dx (N, H, W, C) with the sum of the column entries copied from each cell; return dx."""
    N, H, W, C = dx.shape
    OH = (H + PT + PB - KH) // SH + 1
    OW = (W + PL + PR - KW) // SW + 1
    for nh in prange(N * H):                   # one input row of one image per iteration
        n = nh // H
        h = nh - n * H
        for w in range(W):
            for c in range(C):
                dx[n, h, w, c] = 0
            for i in range(KH):                # window offsets i with oh*SH + i - PT == h
                t = h + PT - i
                if t < 0 or t % SH != 0:
                    continue
                oh = t // SH
                if oh >= OH:
                    continue
                for j in range(KW):
                    u = w + PL - j
                    if u < 0 or u % SW != 0:
                        continue
                    ow = u // SW
                    if ow >= OW:
                        continue
                    row = (n * OH + oh) * OW + ow
                    base = (i * KW + j) * C
                    for c in range(C):
                        dx[n, h, w, c] += cols[row, base + c]
    return dx
