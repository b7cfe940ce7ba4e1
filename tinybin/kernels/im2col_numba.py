"""Fast im2col / col2im for NHWC convolution, compiled by Numba.

Same signatures, same results as `im2col_ref.py` (read that first; the Notation block there
defines N, H, W, C, KH, KW, SH, SW, PT, PB, PL, PR, OH, OW). What these versions rely on:

- NHWC layout: the C values of one input cell are contiguous, and so are the C slots they fill
  in a column row, so the innermost loop is a unit-stride copy the compiler vectorises.
- Row-major columns (N*OH*OW, KH*KW*C): im2col writes each row once, front to back.
- Work split for threads where writes are disjoint, so no two threads ever write one element:
  - im2col: one unit of work is one output row of one image, (n, oh). It fills its own OW
    rows of cols, and there is parallel work even for a single image.
  - col2im: one unit is one image. Overlapping windows add into the same dx cells, so an image
    belongs to one thread alone; its dx (256 KB for 32×32×64 float32) stays in cache while
    cols, the big array, is read strictly front to back. This scatter measured 1.5× faster
    than a gather in which each dx cell collects its <= KH*KW entries from scattered rows.
- Each kernel does a range of those units (`_im2col_rows`, `_col2im_images`); `workers.split`
  runs it on one thread or shares the units among threads by the `parallel` setting
  (kernels/config.py; see `tinybin/threads.py` for when threads win).
- The caller passes the output buffer, so a workspace can be reused across calls (allocating
  a fresh, page-faulting column matrix on every call costs far more than filling it).
- `cache=True`: the machine code is stored in `__pycache__` (or NUMBA_CACHE_DIR) and the next
  process loads it instead of compiling. Each dtype (float32, float64) compiles once.

Run with NUMBA_DISABLE_JIT=1 to step through these loops as ordinary Python.
"""
from numba import njit

from .im2col_ref import output_size
from .workers import split


@njit(cache=True, nogil=True)
def _im2col_rows(x, cols, KH, KW, SH, SW, PT, PL, OH, OW, lo, hi):
    """Fill the rows of cols that belong to output rows lo..hi-1, output row nr = n*OH + oh of image n."""
    N, H, W, C = x.shape
    for nr in range(lo, hi):
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


@njit(cache=True, nogil=True)
def _col2im_images(cols, dx, KH, KW, SH, SW, PT, PL, OH, OW, lo, hi):
    """Fill dx[n], n = lo..hi-1, with the sum of the column entries of image n copied from each cell."""
    N, H, W, C = dx.shape
    for n in range(lo, hi):
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


def im2col(x, cols, KH, KW, SH, SW, PT, PB, PL, PR):
    """Fill cols (N*OH*OW, KH*KW*C) with the windows of x (N, H, W, C); return cols."""
    OH, OW = output_size(x.shape[1], x.shape[2], KH, KW, SH, SW, PT, PB, PL, PR)
    split(_im2col_rows, x.shape[0] * OH, x, cols, KH, KW, SH, SW, PT, PL, OH, OW)
    return cols


def col2im(cols, dx, KH, KW, SH, SW, PT, PB, PL, PR):
    """Fill dx (N, H, W, C) with the sum of the column entries copied from each cell; return dx."""
    OH, OW = output_size(dx.shape[1], dx.shape[2], KH, KW, SH, SW, PT, PB, PL, PR)
    split(_col2im_images, dx.shape[0], cols, dx, KH, KW, SH, SW, PT, PL, OH, OW)
    return dx
