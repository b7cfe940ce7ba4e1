"""Fast Winograd F(m×m, 3×3) tile transforms for NHWC convolution, compiled by Numba.

Same signatures, same results (to rounding) as `winograd_ref.py` (read that first: it defines
Bᵀ, G, Aᵀ, T = m + 2, TH, TW, P and the tile layout). What these versions rely on:

- One pass over memory. The reference gathers every tile into a (N, TH, TW, T, T, C) copy and
  then transforms it; here the gather is fused with the transform: a tile's T×T×C values are
  read into a small buffer that stays in L1 and transformed there, and only V is written.
- NHWC: the C values of one cell are contiguous, so the innermost loop of every step runs over
  channels with unit stride, and the compiler vectorises it.
- The transform matrices are small and partly zero (Bᵀ of F(4, 3) has 22 non-zeros of 36):
  a zero coefficient skips its whole channel loop, the test costs one branch per C values.
- One gather kernel, `_gather_rows`, serves two transforms: the input's Bᵀ d B (T×T tiles
  overlapping by 2) and the output gradient's A dY Aᵀ (m×m tiles, no overlap) -- both read
  a square tile at stride m and multiply it by one matrix from both sides.
- Work split for threads where writes are disjoint: one unit is one row of tiles of one image,
  (n, th). It writes its own TW tiles of V (or its own m output rows in `output_tiles`).
- The weight gradient's products, dU[ab] = V[ab]ᵀ dM[ab] at the T² transform points, each sum
  over all P tiles: NumPy's batched matmul hands them to OpenBLAS as T² products of a small
  C×OC result over a long P, and OpenBLAS's threads meet at a barrier many times in each. With
  two busy processes on the 2 cores that took 33× im2col's time at 8×8×64 (0.39× at
  32×32×64). `_tile_products` instead gives each unit one transform point and one chunk of
  tiles, summed in registers (8 input × 16 output channels, as direct_numba's weight
  gradient), and adds the chunks' partial sums in chunk order: no barrier, the same result on
  any number of threads. Measured at batch 125, calls alternated in one process: quiet,
  im2col's dw time over this one's 1.4-1.6× (OpenBLAS's product: 1.7-2.1×); with two busy
  processes, 1.3-1.7× (OpenBLAS's: 0.03-0.92×). Shapes off the block fall back to matmul.
- Each kernel does a range of units; `workers.split` runs it on one thread or shares the units
  among threads by the `parallel` setting (kernels/config.py) on every call.
- `cache=True`: compiled once per dtype, loaded from the cache by later processes.

Run with NUMBA_DISABLE_JIT=1 to step through these loops as ordinary Python.
"""
import numpy as np
from numba import njit

from .registers import LANES as B
from .registers import ROWS as Q
from .registers import block, carray
from .winograd_ref import matrices
from .winograd_ref import weight_products as _matmul_products
from .workers import split

# the products' register block: Q input channels × B output channels (registers.py)
CHUNKS = 8            # at most this many chunks of tiles (partial sums) per transform point
MIN_ROWS = 256        # ... of at least this many tiles each
_FMA = {"contract"}


@njit(cache=True, nogil=True)
def _gather_rows(src, dst, L, m, S, PT, PL, TH, TW, lo, hi):
    """dst[a*T + b, p] = sum_{u,v} L[a, u] L[b, v] src[n, th*m + u - PT, tw*m + v - PL]
    for the TW tiles p of each tile row r = n*TH + th, lo <= r < hi; L is (T, S), tiles are
    S×S, zero outside src."""
    N, H, W, C = src.shape
    T = L.shape[0]
    d = np.empty((S, S, C), src.dtype)                # one tile
    t = np.empty((T, S, C), src.dtype)                # L d
    for r in range(lo, hi):
        n = r // TH
        th = r - n * TH
        for tw in range(TW):
            p = r * TW + tw
            for u in range(S):                        # gather, zeros outside src
                h = th * m + u - PT
                for v in range(S):
                    w = tw * m + v - PL
                    if 0 <= h < H and 0 <= w < W:
                        for c in range(C):
                            d[u, v, c] = src[n, h, w, c]
                    else:
                        for c in range(C):
                            d[u, v, c] = 0
            for a in range(T):                        # t = L d       (rows)
                for v in range(S):
                    for c in range(C):
                        t[a, v, c] = 0
                for u in range(S):
                    k = L[a, u]
                    if k != 0:
                        for v in range(S):
                            for c in range(C):
                                t[a, v, c] += k * d[u, v, c]
            for a in range(T):                        # dst = t Lᵀ   (columns)
                for b in range(T):
                    row = a * T + b
                    for c in range(C):
                        dst[row, p, c] = 0
                    for v in range(S):
                        k = L[b, v]
                        if k != 0:
                            for c in range(C):
                                dst[row, p, c] += k * t[a, v, c]


@njit(cache=True, nogil=True)
def _output_rows(M, out, AT, m, TH, TW, lo, hi):
    """out tile rows r = n*TH + th, lo <= r < hi: Y = Aᵀ M[., p] A for their TW tiles, cropped to OH, OW."""
    N, OH, OW, OC = out.shape
    T = AT.shape[1]
    t = np.empty((m, T, OC), M.dtype)                 # Aᵀ M
    for r in range(lo, hi):
        n = r // TH
        th = r - n * TH
        for tw in range(TW):
            p = r * TW + tw
            for u in range(m):
                for b in range(T):
                    for c in range(OC):
                        t[u, b, c] = 0
                for a in range(T):
                    k = AT[u, a]
                    if k != 0:
                        for b in range(T):
                            for c in range(OC):
                                t[u, b, c] += k * M[a * T + b, p, c]
            for u in range(m):
                oh = th * m + u
                if oh >= OH:                           # an edge tile: drop the extra rows
                    break
                for v in range(m):
                    ow = tw * m + v
                    if ow >= OW:
                        break
                    for c in range(OC):
                        out[n, oh, ow, c] = 0
                    for b in range(T):
                        k = AT[v, b]
                        if k != 0:
                            for c in range(OC):
                                out[n, oh, ow, c] += k * t[u, b, c]


@njit(cache=True, nogil=True, fastmath=_FMA)
def _tile_products(V, dM, part, rows, lo, hi):
    """part[k, ab] = sum over the tiles p of chunk k (rows tiles each) of V[ab, p]ᵀ dM[ab, p],
    for the units u = k*T² + ab, lo <= u < hi. V is (T², P*C) and dM (T², P*OC): each point's
    tiles flattened, indexed unsigned (no negative-index check: 1.15-1.21x, same bits)."""
    TT, PC = V.shape
    _, _, C, OC = part.shape
    P, NB = PC // C, OC // B
    acc = carray(block(V.dtype), (Q, B))
    for u in range(lo, hi):
        k = u // TT
        ab = u - k * TT
        Vab, dab = V[ab], dM[ab]
        for c0 in range(0, C, Q):
            for ob in range(NB):
                for q in range(Q):
                    for j in range(B):
                        acc[q, j] = 0
                for p in range(k * rows, min(P, (k + 1) * rows)):
                    vo = p * C + c0
                    go = p * OC + ob * B
                    for j in range(B):                   # j outside, q inside: vectorised over j
                        g = dab[np.uintp(go + j)]
                        for q in range(Q):
                            acc[q, j] += Vab[np.uintp(vo + q)] * g
                for q in range(Q):
                    for j in range(B):
                        part[k, ab, c0 + q, ob * B + j] = acc[q, j]


def chunking(P):
    """(tiles per chunk, chunks) for P tiles: at most CHUNKS chunks of at least MIN_ROWS tiles."""
    rows = max(MIN_ROWS, -(-P // CHUNKS))
    return rows, -(-P // rows)


def weight_products(V, dM):
    """dU[ab] = V[ab]ᵀ dM[ab], as winograd_ref.weight_products: (T*T, C, OC)."""
    TT, P, C = V.shape
    OC = dM.shape[2]
    if C % Q or OC % B:
        return _matmul_products(V, dM)
    rows, chunks = chunking(P)
    part = np.empty((chunks, TT, C, OC), V.dtype)
    split(_tile_products, chunks * TT, V.reshape(TT, -1), dM.reshape(TT, -1), part, rows)
    return part.sum(axis=0) if chunks > 1 else part[0]


def input_tiles(x, V, m, PT, PL, TH, TW):
    """Fill V (T*T, N*TH*TW, C) with the transformed input tiles Bᵀ d B; return V."""
    BT, _, _ = matrices(m, x.dtype)
    split(_gather_rows, x.shape[0] * TH, x, V, BT, m, m + 2, PT, PL, TH, TW)
    return V


def dout_tiles(dout, dM, m, TH, TW):
    """Fill dM (T*T, N*TH*TW, OC) with A dY Aᵀ for each m×m tile dY of dout; return dM."""
    _, _, AT = matrices(m, dout.dtype)
    split(_gather_rows, dout.shape[0] * TH, dout, dM, np.ascontiguousarray(AT.T), m, m, 0, 0, TH, TW)
    return dM


def output_tiles(M, out, m, TH, TW):
    """Fill out (N, OH, OW, OC) with the output tiles Aᵀ M A; return out."""
    _, _, AT = matrices(m, M.dtype)
    split(_output_rows, out.shape[0] * TH, M, out, AT, m, TH, TW)
    return out
