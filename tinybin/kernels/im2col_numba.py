"""Fast im2col / col2im for NHWC convolution, compiled by Numba.

Same signatures, same results as `im2col_ref.py` (read that first; the Notation block there
defines N, H, W, C, KH, KW, SH, SW, PT, PB, PL, PR, OH, OW). What these versions rely on:

- NHWC layout: the C values of one input cell are contiguous, and so are the C slots they fill
  in a column row, so the innermost loop is a unit-stride copy the compiler vectorises.
- Row-major columns (N*OH*OW, KH*KW*C): im2col writes each row once, front to back.
- Serial by default. The `prange` loops are safe to split over threads (see the next two
  points), and PARALLEL = True below does so. But the kernels are memory-bound, so a second
  thread gains little, while a Numba thread pool next to OpenBLAS's on a machine with few
  cores costs a lot: its threads wait (spinning) for a peer that the OS has given to the
  other pool or to another process. On a shared 2-core machine the serial kernels measured
  1.2x (idle-ish) to 40x (busy) faster than the same loops on two threads.
- im2col: `prange` over (image, output row) pairs. Each iteration writes its own rows of
  cols, so the writes are disjoint, and there is parallel work even for a single image.
- col2im: `prange` over images. Within an image, overlapping windows add into the same dx
  cells, so one image is one iteration's alone (no two threads ever add into one cell), and
  the image's dx (256 KB for 32×32×64 float32) stays in cache while cols, the big array, is
  read strictly front to back. This scatter measured 1.5× faster than a gather in which each
  dx cell collects its <= KH*KW entries from scattered rows of cols.
- The caller passes the output buffer, so a workspace can be reused across calls (allocating
  a fresh, page-faulting column matrix on every call costs far more than filling it).
- `cache=True`: the machine code is stored in `__pycache__` (or NUMBA_CACHE_DIR) and the next
  process loads it instead of compiling. Each dtype (float32, float64) compiles once.

Run with NUMBA_DISABLE_JIT=1 to step through these loops as ordinary Python.
"""
from numba import njit, prange

PARALLEL = False  # True: run the prange loops on Numba's threads (changing it recompiles)


@njit(parallel=PARALLEL, cache=True)
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


@njit(parallel=PARALLEL, cache=True)
def col2im(cols, dx, KH, KW, SH, SW, PT, PB, PL, PR):
    """Fill dx (N, H, W, C) with the sum of the column entries copied from each cell; return dx."""
    N, H, W, C = dx.shape
    OH = (H + PT + PB - KH) // SH + 1
    OW = (W + PL + PR - KW) // SW + 1
    for n in prange(N):                        # one image per iteration: its dx is its own
        for h in range(H):
            for w in range(W):
                for c in range(C):
                    dx[n, h, w, c] = 0
        for oh in range(OH):
            for ow in range(OW):
                row = (n * OH + oh) * OW + ow  # cols is read front to back
                for i in range(KH):
                    h = oh * SH - PT + i
                    if h < 0 or h >= H:        # a padding row: its gradient is dropped
                        continue
                    for j in range(KW):
                        w = ow * SW - PL + j
                        if w < 0 or w >= W:
                            continue
                        base = (i * KW + j) * C
                        # Overlapping windows saw this cell more than once: add, never assign.
                        for c in range(C):
                            dx[n, h, w, c] += cols[row, base + c]
    return dx
