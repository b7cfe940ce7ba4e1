"""Direct convolution for narrow layers (NHWC, no bias), compiled by Numba.

Same signatures, same results (to rounding) as `direct_ref.py` (read that first). Why it exists:
with 16 or 32 channels, im2col's column matrix is 9× the input and the product that follows
has only 16 or 32 columns, so the layer is bound by memory traffic, not arithmetic (WRN-20-1's
32×32×16 stage: 74 MB of columns per call for 0.6 GFLOP). Here nothing is materialised but a
padded copy of the input; every product is formed in registers. What these loops rely on:

- A register block: B = 16 output channels (one AVX-512 register of float32, two AVX ones) of
  P = 8 neighbouring output pixels: 16 AVX accumulators (8 AVX-512 ones), enough independent
  multiply-adds to hide their latency (P = 4 left it exposed: 1.12-1.21x slower forward on
  WRN-20-1's three stages, P = 12 spilled registers: 0.63-0.73x; with 512-bit vectors P = 16
  was 0.81-0.87x, and 32 output channels per block 1.01-1.03x; two neighbouring output rows
  per block, each shared input row loaded once for both, 0.77-0.96x on WRN-20-1's layers and
  0.52x on the stem; same bits, calls alternated in one process). On a quiet machine this
  kernel does ~48 G multiply-adds a second on 2 cores (WRN-20-1's 32×32×16 layer in 6.1 ms),
  what a bare loop of its shape does (43-54 G). A bare loop with 16 accumulators and its
  strides fixed at compile time did 1.66x as many on one core: out of reach here without one
  compiled kernel per channel count.
  The weight gradient's block is Q = registers.ROWS input channels of B: 16 with 512-bit
  vectors, 8 with 256-bit ones (registers.py has the measurements; at 256 bits Q = 8 was
  1.14-1.35x over Q = 4).
  A row whose width is not a multiple of P is computed a few columns wider (over zero padding)
  and cut: one loop body instead of a second one for the row's end, which doubled the
  kernel's compile time. For every (i, t, j) the block does P·B multiply-adds from P
  input values and one B-vector of weights, so each loaded weight serves P pixels.
- One loop over t = k*C + c per window row: in NHWC a row's pixels are contiguous, so the KW
  pixels under the window are one run of KW*C values, and the reduction runs 3C long without
  a loop boundary at every k; the input is indexed there by an unsigned integer, which spares
  the negative-index check (1.09-1.20x on WRN-20-1's 32×32×16 and 16×16×32 layers, over
  separate k and c loops; same bits, calls alternated in one process). The weight gradient
  indexes its rows the same way: 1.22-1.32x on WRN-20-1's three stages.
- The weights are re-laid out blockwise, (OC/B, KH, KW*C, B), and indexed by the loop
  constant j < B in the last place: the compiler then sees B consecutive floats and loads them
  as one vector (indexing w[..., ob*B + j] hides that behind the negative-index check).
- The accumulator block lives on the stack (registers.py says why), not the heap.
- Loop order j (the B lanes) outside, q (pixels or input channels) inside: the compiler turns
  the B iterations into vector operations in this order and not in the other (measured: the
  weight gradient took 11× longer with q outside).
- `fastmath={"contract"}` lets a*b + c become one fused multiply-add; no other reordering.
- Work split for threads where writes are disjoint: forward, one output row (n, oh) per unit;
  weight gradient, a fixed chunk of IMAGES images per unit with its own partial sum, summed in
  chunk order afterwards -- so the result does not depend on the number of threads.
- Each kernel does a range of units and is compiled once per dtype; `workers.split` runs it
  on one thread or shares the units among threads by the `parallel` setting (kernels/config.py).

Run with NUMBA_DISABLE_JIT=1 to step through these loops as ordinary Python.
"""
import numpy as np
from numba import njit

from .conv_algorithms import DIRECT_BLOCK as B  # the table checks the same multiples
from .conv_algorithms import DIRECT_Q as Q
from .direct_ref import input_gradient_as_forward
from .registers import ELEMENTS, block, carray
from .workers import split

P = 8                 # output pixels of one register block (B output channels each)
IMAGES = 2            # images per unit of the weight gradient (its x and dout stay in L2)
_FMA = {"contract"}


assert P * B <= ELEMENTS and Q * B <= ELEMENTS


@njit(cache=True, nogil=True)
def _pad_images(x, xp, PT, PL, lo, hi):
    """xp[n] = x[n] inside a border of zeros, lo <= n < hi (each value written once)."""
    N, H, W, C = x.shape
    _, HP, WP, _ = xp.shape
    for n in range(lo, hi):
        for h in range(HP):
            if h < PT or h >= H + PT:
                xp[n, h] = 0
                continue
            for w in range(WP):
                if w < PL or w >= W + PL:
                    for c in range(C):
                        xp[n, h, w, c] = 0
                else:
                    for c in range(C):
                        xp[n, h, w, c] = x[n, h - PT, w - PL, c]


@njit(cache=True, nogil=True, fastmath=_FMA)
def _forward_rows(xp, w_blocks, out, C, SH, SW, keep, floor, lo, hi):
    """Output rows r = n*OH + oh, lo <= r < hi:
    out[n, oh, ow, ob*B + j] = sum_{i, t} xp[n, oh*SH + i, ow*SW*C + t] w_blocks[ob, i, t, j], t = k*C + c:
    xp's rows are (W, C) flattened, so a window row's KW pixels are one run of KW*C values.
    A `keep` with images (the input gradient of a layer whose input was max(x, floor)) multiplies
    each sum by (keep > floor) as it is stored: the activation's backward, the same product as
    activations.clamp_backward's, without a pass of its own. keep has no images otherwise."""
    NB, KH, KWC, _ = w_blocks.shape
    N, OH, OW, OC = out.shape
    masked, kept_width = keep.shape[0] > 0, keep.shape[2]   # the output's width before the cut
    one, zero = out.dtype.type(1), out.dtype.type(0)
    acc = carray(block(xp.dtype), (P, B))
    for r in range(lo, hi):
        n = r // OH
        oh = r - n * OH
        for ob in range(NB):
            for ow0 in range(0, OW, P):                  # OW is a multiple of P (see forward)
                for q in range(P):
                    for j in range(B):
                        acc[q, j] = 0
                for i in range(KH):
                    row = xp[n, oh * SH + i]
                    for t in range(KWC):
                        for j in range(B):           # the constant P lets the compiler unroll
                            wv = w_blocks[ob, i, t, j]   # these loops into vector operations
                            for q in range(P):       # (an unsigned index: no negative-index check)
                                acc[q, j] += row[np.uintp((ow0 + q) * SW * C + t)] * wv
                for q in range(P):
                    if masked and ow0 + q < kept_width:  # (the columns cut afterwards are not)
                        for j in range(B):
                            m = one if keep[n, oh, ow0 + q, ob * B + j] > floor else zero
                            out[n, oh, ow0 + q, ob * B + j] = acc[q, j] * m
                    else:
                        for j in range(B):
                            out[n, oh, ow0 + q, ob * B + j] = acc[q, j]


@njit(cache=True, inline="always")
def _inside(i, pad, stride, size, out_size):
    """(first, end) outputs o whose window offset i reads inside the input: 0 <= o*stride + i - pad < size."""
    first = max(0, -(-(pad - i) // stride))
    return first, max(first, min(out_size, (size + pad - i - 1) // stride + 1))


@njit(cache=True, inline="always", fastmath=_FMA)
def _add_row(acc, xrow, grow, ow0, ow1, x0, xstep, g0, OC):
    """acc[q, j] += xrow[x0 + ow*xstep + q] * grow[ow*OC + g0 + j] over the output pixels ow0 <= ow < ow1:
    one input row's share of a (Q, B) block of dw (both weight-gradient kernels; inlined, so the block stays in registers)."""
    for ow in range(ow0, ow1):
        xo = x0 + ow * xstep
        go = ow * OC + g0
        for j in range(B):
            gv = grow[np.uintp(go + j)]
            for q in range(Q):
                acc[q, j] += xrow[np.uintp(xo + q)] * gv


@njit(cache=True, nogil=True, fastmath=_FMA)
def _weights_chunks(x, dout, part, PT, PL, SH, SW, lo, hi):
    """part[u], lo <= u < hi = chunk u's images' share of dw; x is (N, H, W*C) and dout (N, OH, OW*OC),
    rows flattened and indexed unsigned, like the forward's input."""
    N, H, WC = x.shape
    _, OH, OWC = dout.shape
    _, KH, KW, C, OC = part.shape
    W, NB = WC // C, OC // B
    OW = OWC // OC
    acc = carray(block(x.dtype), (Q, B))
    for u in range(lo, hi):
        for i in range(KH):
            oh0, oh1 = _inside(i, PT, SH, H, OH)             # rows whose window row i is inside x
            for k in range(KW):
                ow0, ow1 = _inside(k, PL, SW, W, OW)
                for c0 in range(0, C, Q):
                    for ob in range(NB):
                        for q in range(Q):
                            for j in range(B):
                                acc[q, j] = 0
                        for n in range(u * IMAGES, min(N, (u + 1) * IMAGES)):
                            for oh in range(oh0, oh1):
                                _add_row(acc, x[n, oh * SH + i - PT], dout[n, oh], ow0, ow1,
                                         (k - PL) * C + c0, SW * C, ob * B, OC)
                        for q in range(Q):
                            for j in range(B):
                                part[u, i, k, c0 + q, ob * B + j] = acc[q, j]


@njit(cache=True, nogil=True, fastmath=_FMA)
def _weights_chunks_padded(xp, dout, part, C, SH, SW, lo, hi):
    """The same sums over a zero-padded input xp (N, HP, WP*C), for any C: part[u, i, t, oc] with
    t = k*C + c in blocks of Q (a window row's KW pixels are one run of KW*C values, as in the
    forward), so a 3-channel layer fills 9 rows of a 16-row block rather than 3. No row is
    skipped at the borders: the padding's zeros add nothing. A block's rows past KW*C read the
    next pixel's values; grad_weights drops them."""
    N, HP, WPC = xp.shape
    _, OH, OWC = dout.shape
    _, KH, KWCQ, OC = part.shape
    NB, OW = OC // B, OWC // OC
    acc = carray(block(xp.dtype), (Q, B))
    for u in range(lo, hi):
        for i in range(KH):
            for t0 in range(0, KWCQ, Q):
                for ob in range(NB):
                    for q in range(Q):
                        for j in range(B):
                            acc[q, j] = 0
                    for n in range(u * IMAGES, min(N, (u + 1) * IMAGES)):
                        for oh in range(OH):
                            _add_row(acc, xp[n, oh * SH + i], dout[n, oh], 0, OW, t0, SW * C, ob * B, OC)
                    for q in range(Q):
                        for j in range(B):
                            part[u, i, t0 + q, ob * B + j] = acc[q, j]


def _padded_copy(x, HP, WP, PT, PL):
    """x (N, H, W, C) at rows PT.., columns PL.. of an (N, HP, WP, C) array of zeros (forward and dw)."""
    xp = np.empty((x.shape[0], HP, WP, x.shape[3]), x.dtype)
    split(_pad_images, x.shape[0], np.ascontiguousarray(x), xp, PT, PL)
    return xp


def forward(x, w, padding, stride=(1, 1), keep=None, floor=0.0):
    """out = direct_ref.forward(x, w, padding, stride); needs OC % B == 0.
    With keep (an array of out's shape), out · (keep > floor), in the same pass."""
    KH, KW, C, OC = w.shape
    PT, PB, PL, PR = padding
    SH, SW = stride
    N, H, W, _ = x.shape
    assert OC % B == 0, f"direct convolution needs C_out % {B} == 0, got {OC}"
    OH, OW = (H + PT + PB - KH) // SH + 1, (W + PL + PR - KW) // SW + 1
    extra = -OW % P     # output columns computed (from zero padding) and dropped: whole blocks only
    xp = _padded_copy(x, H + PT + PB, max(W + PL + PR, (OW + extra - 1) * SW + KW), PT, PL)
    w_blocks = np.ascontiguousarray(w.reshape(KH, KW * C, OC // B, B).transpose(2, 0, 1, 3))
    out = np.empty((N, OH, OW + extra, OC), x.dtype)
    if keep is None:
        keep = np.empty((0, 1, 1, OC), x.dtype)
    else:
        assert keep.shape == (N, OH, OW, OC), f"keep {keep.shape} is not the output's shape {(N, OH, OW, OC)}"
    split(_forward_rows, N * OH, xp.reshape(xp.shape[:2] + (-1,)), w_blocks, out, C, SH, SW,
          np.ascontiguousarray(keep, x.dtype), x.dtype.type(floor))
    return np.ascontiguousarray(out[:, :, :OW]) if extra else out


def grad_input(dout, w, padding, keep=None, floor=0.0):
    """dx = direct_ref.grad_input(dout, w, padding) of a stride-1 layer; needs C % B == 0 and every pad <= K-1.
    With keep (x's shape): dx · (keep > floor), the backward of an activation max(·, floor) whose output
    keep was this layer's input."""
    return forward(dout, *input_gradient_as_forward(w, padding), keep=keep, floor=floor)


def grad_weights(x, dout, padding, KH, KW, stride=(1, 1)):
    """dw = direct_ref.grad_weights(x, dout, padding, KH, KW, stride); needs OC % B == 0.
    C % Q == 0 reads x in place; any other C (the 3-channel stem) reads a padded copy, one
    block of Q per KW*C window-row values (on WRN's stem at batch 125, im2col's dw took 3.7× as long)."""
    N, H, W, C = x.shape
    PT, PB, PL, PR = padding
    SH, SW = stride
    _, OH, OW, OC = dout.shape
    assert OC % B == 0, f"direct weight gradient needs C_out % {B} == 0, got {OC}"
    units = (N + IMAGES - 1) // IMAGES
    dout_rows = np.ascontiguousarray(dout).reshape(N, OH, -1)
    if C % Q == 0:
        part = np.empty((units, KH, KW, C, OC), x.dtype)
        split(_weights_chunks, units, np.ascontiguousarray(x).reshape(N, H, W * C), dout_rows, part, PT, PL, SH, SW)
        return part.sum(axis=0)
    KWCQ = -(-KW * C // Q) * Q                              # KW*C rounded up to whole blocks
    WP = max(W + PL + PR, -(-((OW - 1) * SW * C + KWCQ) // C))   # the last block's reads stay in the row
    xp = _padded_copy(x, max(H + PT + PB, (OH - 1) * SH + KH), WP, PT, PL)
    part = np.empty((units, KH, KWCQ, OC), x.dtype)
    split(_weights_chunks_padded, units, xp.reshape(N, xp.shape[1], -1), dout_rows, part, C, SH, SW)
    return part.sum(axis=0)[:, :KW * C].reshape(KH, KW, C, OC)
