"""Reference Winograd F(m×m, 3×3) transforms for NHWC 3×3 stride-1 convolution: NumPy, to be read.

1-D first. Two outputs of a 3-tap correlation, y_i = d_i g_0 + d_{i+1} g_1 + d_{i+2} g_2, cost
6 multiplications directly. Winograd's minimal filtering F(2, 3) needs 4:

    m1 = (d0 - d2) g0            m2 = (d1 + d2) (g0 + g1 + g2) / 2
    m4 = (d1 - d3) g2            m3 = (d2 - d1) (g0 - g1 + g2) / 2
    y0 = m1 + m2 + m3            y1 = m2 - m3 - m4

In matrix form y = Aᵀ [(G g) ⊙ (Bᵀ d)]: Bᵀ transforms the input tile d (m + 2 values), G the
filter g (3 values), ⊙ is the elementwise product of the m + 2 "transform points", and Aᵀ
maps them back to m outputs. F(4, 3) does the same for 4 outputs from a 6-value tile with 6
multiplications instead of 12 (points 0, ±1, ±2 and ∞, Lavin & Gray's choice).

2-D by nesting: an m×m output tile of a 3×3 correlation is

    Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A          d (m+2)×(m+2) input tile, g 3×3, Y m×m,

(m+2)² multiplications instead of 9m²: 16 vs 36 for F(2×2, 3×3) (2.25× fewer), 36 vs 144
for F(4×4, 3×3) (4×). Over channels, the products at one transform point (a, b) sum over the
input channels c, so each point is one matrix product over all tiles of the batch:

    M[ab] = V[ab] @ U[ab]        V[ab] (P, C) input tiles, U[ab] (C, OC) filters, P tiles

and the convolution is (m+2)² GEMMs of (P, C) @ (C, OC) with P = N·⌈OH/m⌉·⌈OW/m⌉, against
im2col's one GEMM of (N·OH·OW, 9C) @ (9C, OC).

Notation (as in im2col_ref.py): N, H, W, C, OC, PT, PL, OH, OW; plus
m        output tile size (2 or 4);  T = m + 2 the input tile size and number of points per axis
TH, TW   tiles along the output height and width: TH = ceil(OH / m), TW = ceil(OW / m)
P        tiles in the batch, N*TH*TW, ordered (n, th, tw)
Tile (th, tw) covers outputs [th*m, th*m + m) and reads padded-input rows [th*m, th*m + T):
neighbouring input tiles overlap by 2 rows/columns. Edge tiles reach past the output and the
input; there the input is read as zero and the extra outputs are dropped.

The functions write into a buffer the caller gives them; `winograd_numba.py` has the same
signatures and computes the same values in one pass over memory.
Reference: Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016, §4
(the F(2×2, 3×3) and F(4×4, 3×3) matrices are theirs).
"""
import numpy as np

# F(2, 3): points 0, 1, -1 and ∞.
BT2 = np.array([[1, 0, -1, 0],
                [0, 1, 1, 0],
                [0, -1, 1, 0],
                [0, 1, 0, -1]], dtype=np.float64)
G2 = np.array([[1, 0, 0],
               [1 / 2, 1 / 2, 1 / 2],
               [1 / 2, -1 / 2, 1 / 2],
               [0, 0, 1]], dtype=np.float64)
AT2 = np.array([[1, 1, 1, 0],
                [0, 1, -1, -1]], dtype=np.float64)

# F(4, 3): points 0, 1, -1, 2, -2 and ∞. Larger entries (4, 5, 8, 1/24) than F(2, 3): this is
# where F(4×4) loses float32 digits -- the transforms add and subtract values up to ~100×
# apart in size, and 1/6, 1/12, 1/24 are not exact in binary.
BT4 = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], dtype=np.float64)
G4 = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], dtype=np.float64)
AT4 = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], dtype=np.float64)


def matrices(m, dtype=np.float64):
    """(Bᵀ (T, T), G (T, 3), Aᵀ (m, T)) of F(m, 3), m in {2, 4}, in dtype."""
    if m not in (2, 4):
        raise ValueError(f"Winograd F(m, 3) is implemented for m = 2 and m = 4, not m = {m!r}")
    BT, G, AT = (BT2, G2, AT2) if m == 2 else (BT4, G4, AT4)
    return BT.astype(dtype), G.astype(dtype), AT.astype(dtype)


def tiles(OH, OW, m):
    """(TH, TW): m×m output tiles needed to cover OH×OW outputs."""
    return -(-OH // m), -(-OW // m)


def transform_weights(w, m):
    """U[a*T + b] = G w[:, :, c, oc] Gᵀ at every (c, oc): w (3, 3, C, OC) -> U (T*T, C, OC)."""
    _, G, _ = matrices(m, w.dtype)
    T, C, OC = m + 2, w.shape[2], w.shape[3]
    Gw = np.matmul(G, w.reshape(3, 3 * C * OC)).reshape(T, 3, C * OC)   # a, j, (c, oc)  (G w)
    return np.matmul(G, Gw).reshape(T * T, C, OC)                       # (a, b), c, oc  ((G w) Gᵀ)


def weight_products(V, dM):
    """dU[ab] = V[ab]ᵀ dM[ab] at each transform point ab, the sum over all tiles inside.

    Shapes: V (T*T, P, C), dM (T*T, P, OC) -> dU (T*T, C, OC)."""
    return np.matmul(V.transpose(0, 2, 1), dM)


def weights_gradient(dU, m):
    """The adjoint of transform_weights: dw = Gᵀ dU[a, b] G at every (c, oc).

    Shapes: dU (T*T, C, OC) -> dw (3, 3, C, OC)."""
    _, G, _ = matrices(m, dU.dtype)
    T, C, OC = m + 2, dU.shape[1], dU.shape[2]
    dUG = np.matmul(G.T, dU.reshape(T, T, C * OC))                      # a, j, (c, oc)  (dU G)
    return np.matmul(G.T, dUG.reshape(T, 3 * C * OC)).reshape(3, 3, C, OC)  # i, j, c, oc  (Gᵀ dU G)


def input_tiles(x, V, m, PT, PL, TH, TW):
    """Fill V (T*T, N*TH*TW, C) with the transformed input tiles Bᵀ d B; return V.

    d is the T×T tile of x zero-padded by PT rows on top and PL columns on the left (and zeros
    wherever a tile reaches past x): d[u, v] = xp[n, th*m + u, tw*m + v, c].
    """
    N, H, W, C = x.shape
    T = m + 2
    BT, _, _ = matrices(m, x.dtype)
    xp = np.zeros((N, TH * m + 2, TW * m + 2, C), x.dtype)  # every tile fits (TH*m >= OH)
    h, w = min(H, TH * m + 2 - PT), min(W, TW * m + 2 - PL)  # rows/columns of x any tile reads
    xp[:, PT:PT + h, PL:PL + w, :] = x[:, :h, :w, :]
    d = np.empty((N, TH, TW, T, T, C), x.dtype)
    for u in range(T):                                      # one strided slice per tile cell,
        for v in range(T):                                  # as im2col's window loop
            d[:, :, :, u, v, :] = xp[:, u:u + TH * m:m, v:v + TW * m:m, :]  # N, TH, TW, C
    Vt = np.einsum("au,nhwuvc,bv->abnhwc", BT, d, BT, optimize=True)       # T, T, N, TH, TW, C
    V[...] = Vt.reshape(T * T, N * TH * TW, C)
    return V


def output_tiles(M, out, m, TH, TW):
    """Fill out (N, OH, OW, OC) with the output tiles Aᵀ M A; return out.

    M (T*T, N*TH*TW, OC) holds the products at the transform points; edge tiles' outputs
    beyond OH, OW are dropped."""
    N, OH, OW, OC = out.shape
    T = m + 2
    _, _, AT = matrices(m, M.dtype)
    M6 = M.reshape(T, T, N, TH, TW, OC)
    Y = np.einsum("ua,abnhwo,vb->nhuwvo", AT, M6, AT, optimize=True)       # N, TH, m, TW, m, OC
    out[...] = Y.reshape(N, TH * m, TW * m, OC)[:, :OH, :OW, :]
    return out


def dout_tiles(dout, dM, m, TH, TW):
    """Fill dM (T*T, N*TH*TW, OC) with A dY Aᵀ for each m×m tile dY of dout; return dM.

    The adjoint of output_tiles: if out = output_tiles(M), then dL/dM = dout_tiles(dL/dout).
    Tile cells past OH, OW (outputs that were dropped) count as zero."""
    N, OH, OW, OC = dout.shape
    T = m + 2
    _, _, AT = matrices(m, dout.dtype)
    dY = np.zeros((N, TH * m, TW * m, OC), dout.dtype)
    dY[:, :OH, :OW, :] = dout
    dY = dY.reshape(N, TH, m, TW, m, OC)
    dM6 = np.einsum("ua,nhuwvo,vb->abnhwo", AT, dY, AT, optimize=True)     # T, T, N, TH, TW, OC
    dM[...] = dM6.reshape(T * T, N * TH * TW, OC)
    return dM
