"""Lesson 12 — Winograd's minimal filtering: fewer multiplications for a 3×3 convolution.

Question
    im2col turns a 3×3 convolution into one matrix product of 9·C multiply-adds per output and
    channel. Winograd's F(m×m, 3×3) computes an m×m tile of outputs with (m+2)² multiplications
    instead of 9m². How does that work, how much faster is it here, and what does it cost in
    float32 accuracy?

Run
    python lessons/12_winograd.py

Expected output (a full run, 12 s; timings vary with the machine and its load — 2 cores shared
with other runs here, load average 3.3; single-threaded: TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1;
fwd+bwd: dx and dw, a Winograd row computing both by Winograd)
    1-D F(2, 3): d = [1.0, 2.0, 3.0, 4.0], g = [1.0, 2.0, -1.0]
      direct (6 multiplications): y = [2.0, 4.0]
      by hand (4 multiplications): y = [2.0, 4.0]
      as matrices Aᵀ[(G g) ⊙ (Bᵀ d)]: y = [2.0, 4.0]
      Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
      G  = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]]
      Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]
    2-D by nesting: Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, one (m+2)×(m+2) input tile -> m×m outputs
      F(2×2, 3×3): 16 multiplications per tile and channel pair, not 36 (2.25× fewer); matches the direct tile to 8.9e-16
      F(4×4, 3×3): 36 multiplications per tile and channel pair, not 144 (4.00× fewer); matches the direct tile to 1.3e-14
    WRN-20-4 stage 1 (125, 32, 32, 64), 3x3, 64 -> 64, float32, median of 3 rounds (ms); load average 3.3:
      im2col     fwd    262.3   fwd+bwd    908.9   (im2col / this: 1.00×)
      winograd2  fwd    222.0   fwd+bwd    668.1   (im2col / this: 1.36×)
      winograd4  fwd     88.6   fwd+bwd    365.4   (im2col / this: 2.49×)
    float32 against the float64 definition (16 x 16x16x64, 1-bit weights), relative RMS error:
      im2col 3.0e-07, winograd2 2.6e-07, winograd4 1.7e-06
      which step loses the digits: in float64 but one step in float32 -- U filter transform, V input
      transform, M the GEMM result, out the output; GEMM sum: the products summed over channels in float32
      F(2×2): U 2.6e-08, V 4.3e-08, M 4.3e-08, out 2.5e-08, GEMM sum 2.5e-07
      F(4×4): U 2.0e-07, V 2.8e-07, M 2.8e-07, out 2.5e-08, GEMM sum 1.7e-06
      float32 F(4×4) error by position in the output tile (rows: u, columns: v), relative RMS:
        4.9e-07  4.8e-07  6.8e-07  1.6e-06
        4.8e-07  4.8e-07  6.8e-07  1.5e-06
        6.8e-07  6.7e-07  9.5e-07  2.2e-06
        1.6e-06  1.5e-06  2.2e-06  5.0e-06
      against the tile's first position (0, 0): the corner (3, 3) 10.3×, the rest of the last row
      and column 3.2–4.5×, the inner 3×3 at most 1.9×
      Aᵀ row norms [2.2, 3.2, 5.8, 11.4]: the last output row and column sum the transform points with weights up to 8

Takeaway
    Winograd trades multiplications for additions on small tiles: F(2, 3) gives 2 outputs of a
    3-tap filter with 4 multiplications instead of 6, and nested in 2-D, F(4×4, 3×3) needs 36
    per tile and channel pair instead of 144. Summed over channels, the products at each of
    the (m+2)² transform points form one matrix product, so a layer becomes 36 GEMMs with 4×
    fewer multiply-adds than im2col's one, plus transforms that read and write memory once.
    The backward pass runs by Winograd too: dx is one more Winograd forward (the flipped
    filter), and the weight gradient sums dU = Vᵀ dM over the tiles at each transform point
    (kernels/winograd_numba.py weight_products), then dw = Gᵀ dU G. Forward and backward
    together, the layer got 2.49× faster with F(4×4) and 1.36× with F(2×2) in this run, far
    from 4× (a second run minutes later, 1.78× and 1.24×), so the speed-up depends on the load,
    the error below does not: the transforms are extra passes over memory (`python -m tinybin
    bench conv` times every algorithm on WRN-20-4's and WRN-20-1's layers). The price is
    float32 accuracy: the forward's error by F(4×4) is 6× im2col's (1.7e-6 against 3.0e-7),
    F(2×2)'s is im2col's. Rounding any one
    intermediate costs F(4×4) 6.5–8× what it costs F(2×2), and the float32 sum over channels
    inside the GEMMs dominates (1.7e-6): its rounding errors leave through Aᵀ, whose last row
    holds ±8, so the error is not spread evenly over a 4×4 tile. Against its first position,
    the corner (3, 3) carries 10× the error (5.0e-6 against 4.9e-7), the rest of the last row
    and column 3–4.5×, the inner 3×3 at most 2×: the corner alone, not the whole last row
    and column, is 10× worse.

Try next
    --stage 2 / --stage 3        WRN-20-4's 16×16×128 and 8×8×256 layers
    --batch 32 --repeats 5       other sizes, more repeats
    TINYBIN_CONV=im2col          the algorithms the engine tries for a layer, in order (an order such as
                                 winograd4+direct; default winograd4+direct: Winograd from 64
                                 channels, direct below, im2col for the rest), e.g. for
                                 `python -m tinybin train`
    TINYBIN_CONV_DW=im2col       a Winograd layer's weight gradient by im2col instead
"""
import os
import time

import numpy as np

from tinybin import kernels
from tinybin.kernels import winograd_ref
from tinybin.kernels.winograd_ref import matrices
from tinybin.ops.conv import conv2d_backward, conv2d_forward

import lesson

NEEDS_DATA = False
FIGURES = ["winograd.png"]
RESULT_KEYS = ["f23_by_hand", "multiplications", "speed_ms", "float32_error", "error_sources", "error_by_position"]

STAGES = {1: (32, 64), 2: (16, 128), 3: (8, 256)}  # WRN-20-4: (H = W, C) of each stage
ALGORITHMS = ["im2col", "winograd2", "winograd4"]


def f23_by_hand(d, g):
    """Two outputs of a 3-tap correlation with 4 multiplications (Lavin & Gray, §4)."""
    m1 = (d[0] - d[2]) * g[0]
    m2 = (d[1] + d[2]) * (g[0] + g[1] + g[2]) / 2      # the filter sums are computed once per
    m3 = (d[2] - d[1]) * (g[0] - g[1] + g[2]) / 2      # filter, not per tile: they do not count
    m4 = (d[1] - d[3]) * g[2]
    return np.array([m1 + m2 + m3, m2 - m3 - m4])


def direct(x, w):
    """The definition in float64, one output row at a time (no transforms, no GEMM)."""
    N, H, W, C = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((N, H, W, w.shape[3]))
    for i in range(3):
        for j in range(3):
            out += np.tensordot(xp[:, i:i + H, j:j + W, :], w[i, j], axes=(3, 0))   # N, H, W, OC
    return out


def winograd_steps(x, w, m, rounded):
    """F(m×m, 3×3) forward in float64 from the reference transforms, rounding to float32 only
    the steps named in `rounded` -- "U", "V", "M", "out": that step's result; "GEMM": the
    products summed over channels in float32 -- to see which step loses the digits."""
    def r(a, step):
        return a.astype(np.float32).astype(np.float64) if step in rounded else a
    N, H, W, C = x.shape
    T, OC = m + 2, w.shape[3]
    TH, TW = winograd_ref.tiles(H, W, m)
    U = r(winograd_ref.transform_weights(w, m), "U")                                 # T*T, C, OC
    V = r(winograd_ref.input_tiles(x, np.empty((T * T, N * TH * TW, C)), m, 1, 1, TH, TW), "V")
    if "GEMM" in rounded:                                      # the products summed in float32
        M = np.matmul(V.astype(np.float32), U.astype(np.float32)).astype(np.float64)
    else:
        M = r(np.matmul(V, U), "M")                                                  # T*T, P, OC
    out = winograd_ref.output_tiles(M, np.empty((N, H, W, OC)), m, TH, TW)
    return r(out, "out")


def rel_rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)))


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--batch", type=int, default=125, help="images per batch in the timing")
    parser.add_argument("--stage", type=int, default=1, choices=[1, 2, 3], help="WRN-20-4 stage shape to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (the median is shown)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = min(args.batch, 25), 1
    rng = np.random.default_rng(args.seed)
    results = {}

    # ----- 1. F(2, 3) by hand ------------------------------------------------------------------
    d, g = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 2.0, -1.0])
    y_hand = f23_by_hand(d, g)
    y_direct = np.array([d[0:3] @ g, d[1:4] @ g])
    BT, G, AT = matrices(2)
    y_matrix = AT @ ((G @ g) * (BT @ d))
    print(f"1-D F(2, 3): d = {d.tolist()}, g = {g.tolist()}")
    print(f"  direct (6 multiplications): y = {y_direct.tolist()}")
    print(f"  by hand (4 multiplications): y = {y_hand.tolist()}")
    print(f"  as matrices Aᵀ[(G g) ⊙ (Bᵀ d)]: y = {y_matrix.tolist()}")
    print("  Bᵀ =", BT.astype(int).tolist())
    print("  G  =", G.tolist())
    print("  Aᵀ =", AT.astype(int).tolist())
    results["f23_by_hand"] = {"direct": y_direct.tolist(), "hand": y_hand.tolist(), "matrix": y_matrix.tolist()}

    # ----- 2. 2-D by nesting, and the multiplication count -----------------------------------
    print("2-D by nesting: Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A, one (m+2)×(m+2) input tile -> m×m outputs")
    counts = {}
    for m in (2, 4):
        BT, G, AT = matrices(m)
        tile, filt = rng.standard_normal((m + 2, m + 2)), rng.standard_normal((3, 3))
        Y = AT @ ((G @ filt @ G.T) * (BT @ tile @ BT.T)) @ AT.T
        Y_direct = np.array([[np.sum(tile[i:i + 3, j:j + 3] * filt) for j in range(m)] for i in range(m)])
        direct_mults, wino_mults = 9 * m * m, (m + 2) ** 2
        counts[f"F({m}x{m},3x3)"] = {"direct": direct_mults, "winograd": wino_mults, "ratio": direct_mults / wino_mults,
                                      "max_abs_diff": float(np.abs(Y - Y_direct).max())}
        print(f"  F({m}×{m}, 3×3): {wino_mults} multiplications per tile and channel pair, not "
              f"{direct_mults} ({direct_mults / wino_mults:.2f}× fewer); matches the direct tile to "
              f"{np.abs(Y - Y_direct).max():.1e}")
    results["multiplications"] = counts

    # ----- 3. measured speed on a WRN-20-4 layer ---------------------------------------------
    H, C = STAGES[args.stage]
    N, R = args.batch, args.repeats
    x = rng.standard_normal((N, H, H, C), dtype=np.float32)
    w = (np.sign(rng.standard_normal((3, 3, C, C))) * np.sqrt(2 / (9 * C))).astype(np.float32)  # 1-bit
    dout = rng.standard_normal((N, H, H, C), dtype=np.float32)
    times = {a: {"fwd": [], "fwd+bwd": []} for a in ALGORITHMS}
    for rep in range(R + 1):                       # round 0 compiles and warms up; then in turn,
        for a in ALGORITHMS:                       # so that a busy machine slows all three alike
            with kernels.settings(conv=a):
                t0 = time.perf_counter()
                _, cache = conv2d_forward(x, w, 1, 1)
                t1 = time.perf_counter()
                conv2d_backward(dout, cache)
                t2 = time.perf_counter()
            if rep:
                times[a]["fwd"].append(1e3 * (t1 - t0))
                times[a]["fwd+bwd"].append(1e3 * (t2 - t0))
    speed = {a: {k: float(np.median(v)) for k, v in t.items()} for a, t in times.items()}
    kernels.clear_workspaces()
    print(f"WRN-20-4 stage {args.stage} ({N}, {H}, {H}, {C}), 3x3, {C} -> {C}, float32, median of {R} rounds (ms); "
          f"load average {os.getloadavg()[0]:.1f}:")
    for a in ALGORITHMS:
        s = speed[a]
        print(f"  {a:10s} fwd {s['fwd']:8.1f}   fwd+bwd {s['fwd+bwd']:8.1f}   "
              f"(im2col / this: {speed['im2col']['fwd+bwd'] / s['fwd+bwd']:.2f}×)")
    results["speed_ms"] = {"shape": [N, H, H, C], **speed}

    # ----- 4. float32 error and where it comes from ------------------------------------------
    n_err = 4 if args.quick else 16
    xe = rng.standard_normal((n_err, 16, 16, 64))
    we = np.sign(rng.standard_normal((3, 3, 64, 64))) * np.sqrt(2 / (9 * 64))
    exact = direct(xe, we)
    errors = {}
    for a in ALGORITHMS:
        with kernels.settings(conv=a):
            out32, _ = conv2d_forward(xe.astype(np.float32), we.astype(np.float32), 1, 1)
        errors[a] = rel_rms(out32.astype(np.float64), exact)
    print(f"float32 against the float64 definition ({n_err} x 16x16x64, 1-bit weights), relative RMS error:")
    print("  " + ", ".join(f"{a} {e:.1e}" for a, e in errors.items()))
    print("  which step loses the digits: in float64 but one step in float32 -- U filter transform, V input")
    print("  transform, M the GEMM result, out the output; GEMM sum: the products summed over channels in float32")
    sources = {}
    for m in (2, 4):
        row = {}
        for step in ("U", "V", "M", "out", "GEMM"):
            row[step] = rel_rms(winograd_steps(xe, we, m, {step}), exact)
        sources[f"winograd{m}"] = row
        print(f"  F({m}×{m}): U {row['U']:.1e}, V {row['V']:.1e}, M {row['M']:.1e}, out {row['out']:.1e}, "
              f"GEMM sum {row['GEMM']:.1e}")
    # Per output position within the 4×4 tile of the real float32 F(4×4): Aᵀ's last row carries 8 and -8.
    with kernels.settings(conv="winograd4"):
        err4 = conv2d_forward(xe.astype(np.float32), we.astype(np.float32), 1, 1)[0] - exact
    by_pos = np.sqrt(np.mean(err4.reshape(n_err, 4, 4, 4, 4, 64) ** 2, axis=(0, 1, 3, 5))) / np.sqrt(np.mean(exact ** 2))
    print("  float32 F(4×4) error by position in the output tile (rows: u, columns: v), relative RMS:")
    for u in range(4):
        print("    " + "  ".join(f"{v:.1e}" for v in by_pos[u]))
    ratio = by_pos / by_pos[0, 0]
    edge = np.concatenate([ratio[3, :3], ratio[:3, 3]])   # last row and last column, corner left out
    print(f"  against the tile's first position (0, 0): the corner (3, 3) {ratio[3, 3]:.1f}×, the rest of the last "
          f"row and column {edge.min():.1f}–{edge.max():.1f}×, the inner 3×3 at most {ratio[:3, :3].max():.1f}×")
    _, _, AT4 = matrices(4)
    print(f"  Aᵀ row norms {np.linalg.norm(AT4, axis=1).round(1).tolist()}: the last output row and column sum "
          f"the transform points with weights up to 8")
    results.update(float32_error=errors, error_sources=sources, error_by_position=by_pos.tolist(),
                   error_ratio_corner=float(ratio[3, 3]), error_ratio_edge=[float(edge.min()), float(edge.max())])

    # ----- figure -----------------------------------------------------------------------------
    plt = lesson.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    pos = np.arange(len(ALGORITHMS))
    ax1.bar(pos - 0.2, [speed[a]["fwd"] for a in ALGORITHMS], 0.4, label="forward")
    ax1.bar(pos + 0.2, [speed[a]["fwd+bwd"] for a in ALGORITHMS], 0.4, label="forward + backward")
    ax1.set_xticks(pos, ALGORITHMS)
    ax1.set_ylabel("ms (median)")
    ax1.set_title(f"3×3 conv, batch {N}, {H}×{H}×{C}")
    ax1.legend()
    im = ax2.imshow(1e6 * by_pos, cmap="viridis")
    ax2.set_title(f"F(4×4) float32 error by tile position: corner {ratio[3, 3]:.1f}× position (0, 0)", fontsize=9)
    ax2.set_xticks(range(4))
    ax2.set_yticks(range(4))
    ax2.set_xlabel("v")
    ax2.set_ylabel("u")
    fig.colorbar(im, ax=ax2, label="relative RMS error (×10⁻⁶)")
    fig.tight_layout()
    lesson.save_figure(fig, args, FIGURES[0])
    lesson.finish(args, results)


if __name__ == "__main__":
    main()
