"""Lesson 02 — convolution as one matrix product (im2col), and col2im's `+=`.

Question
    How does a 3×3 convolution over a batch become a single matrix product, why must the
    backward pass *add* gradients where windows overlap, how much does compiling the copy loops
    with Numba buy over the NumPy reference -- and when does the column matrix cost more than
    the product it feeds?

Run
    python lessons/02_im2col_convolution.py

Expected output (a full run; timings vary with the machine and its load — 2 cores, load ~1.5)
    x (1, 3, 3, 1), 2x2 kernel, stride 1, no padding -> cols (4, 4): one row per output position, one column per window cell
      x = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
      output (0, 0) sees [1.0, 2.0, 4.0, 5.0]
      output (0, 1) sees [2.0, 3.0, 5.0, 6.0]
      output (1, 0) sees [4.0, 5.0, 7.0, 8.0]
      output (1, 1) sees [5.0, 6.0, 8.0, 9.0]
      w = [[1.0, 2.0], [3.0, 4.0]];  cols @ W = [[37.0, 47.0], [67.0, 77.0]]
    direct loops == cols @ W: True
    col2im(ones), 4x4 input, 3x3 kernel, padding 1: how many windows saw each cell
       [[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]]
    dx vs finite differences: col2im with +=  max abs err 1.4e-09;  with =  max abs err 1.1e+01
    tinybin.gradcheck(F.conv2d): ok, max abs err 5.0e-10
    WRN-20-4 stage 1 (125, 32, 32, 64), 3x3, 64 -> 64, float32, median of 3 (ms):
      im2col        reference    162.2   numba     22.3   (x7.3)
      col2im        reference    177.7   numba     25.7   (x6.9)
      conv fwd+bwd  reference    864.7   numba    465.2   (x1.9)
      the three GEMMs alone (forward, dw, dcols): 304.4
    reference and numba agree: max abs diff 0.0e+00 (im2col), 0.0e+00 (col2im)
    WRN-20-1 stage 1 (125, 32, 32, 16), 3x3, 16 -> 16: the columns are 74 MB for an input of 8 MB, and the product
    behind them has only 16 columns
      im2col  fwd+bwd    79.5 ms    22.3 GFLOP/s
      direct  fwd+bwd    19.5 ms    90.5 GFLOP/s
      direct / im2col: 4.1x faster; outputs agree to 5.9e-07 (relative)

Takeaway
    im2col copies each window into a row, so conv = cols @ W(KH·KW·C, OC); in NHWC that product
    already is the (N, OH, OW, OC) output. Its backward sends column entries back to the cells
    they came from; an inner cell seen by 9 windows gets 9 contributions, so col2im must add —
    assigning keeps only the last window's and the gradient is wrong by O(1). Numba makes the
    copies ~7× faster, but a whole conv step only 1.4–2.3× (across runs here): the three
    matrix products, which im2col cannot speed up, take most of its time.
    On a narrow layer the balance turns. With 16 channels the columns are 9× the input (74 MB
    for 8 MB) and the product behind them has only 16 columns, so the layer moves far more
    memory than it computes (22 GFLOP/s). The direct kernels (tinybin/kernels/direct_ref.py,
    direct_numba.py) form each product in registers from the input in place: 4.1× faster here,
    90 GFLOP/s, the same outputs to float32 rounding. tinybin runs them for its narrow stride-1
    layers (kernels/conv_algorithms.py).

Try next
    --batch 32 --repeats 5      other sizes
    --stage 3                   WRN-20-4's third stage (8×8×256)
    TINYBIN_REFERENCE=1         make every conv in tinybin use the NumPy reference kernels
"""
import time

import numpy as np

import tinybin as tb
import tinybin.functional as F
from tinybin import kernels
from tinybin.bench.timer import median_ms
from tinybin.kernels import im2col_numba, im2col_ref
from tinybin.ops.conv import conv2d_backward, conv2d_forward

import lesson

NEEDS_DATA = False
FIGURES = ["im2col_speed.png"]
RESULT_KEYS = ["cols_tiny", "direct_equals_gemm", "window_counts", "dx_error", "speed_ms", "narrow"]

STAGES = {1: (32, 64), 2: (16, 128), 3: (8, 256)}  # WRN-20-4: (H = W, C) of each stage


def columns(x, KH, KW, stride=1, pad=0, impl=im2col_ref):
    """im2col into a fresh buffer (the kernels write into a buffer the caller owns)."""
    N, H, W, C = x.shape
    OH, OW = im2col_ref.output_size(H, W, KH, KW, stride, stride, pad, pad, pad, pad)
    cols = np.empty((N * OH * OW, KH * KW * C), x.dtype)
    return impl.im2col(x, cols, KH, KW, stride, stride, pad, pad, pad, pad)


def col2im_assign(cols, x_shape, KH, KW, pad):
    """The bug: col2im with `=` where `+=` belongs (stride 1). The last window to write wins."""
    N, H, W, C = x_shape
    OH, OW = H + 2 * pad - KH + 1, W + 2 * pad - KW + 1
    cols6 = cols.reshape(N, OH, OW, KH, KW, C)
    dxp = np.zeros((N, H + 2 * pad, W + 2 * pad, C), cols.dtype)
    for i in range(KH):
        for j in range(KW):
            dxp[:, i:i + OH, j:j + OW, :] = cols6[:, :, :, i, j, :]   # should be +=
    return dxp[:, pad:pad + H, pad:pad + W, :]


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--batch", type=int, default=125, help="images per batch in the timing")
    parser.add_argument("--stage", type=int, default=1, choices=[1, 2, 3], help="WRN-20-4 stage shape to time")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is shown)")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats = min(args.batch, 25), 1
    rng = np.random.default_rng(args.seed)
    results = {}

    # ----- 1. the column matrix of a tiny example --------------------------------------------
    x = np.arange(1, 10, dtype=np.float64).reshape(1, 3, 3, 1)      # N, H, W, C
    w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)       # KH, KW, C, OC
    cols = columns(x, 2, 2)                                          # N*OH*OW, KH*KW*C = 4, 4
    print(f"x (1, 3, 3, 1), 2x2 kernel, stride 1, no padding -> cols {cols.shape}: "
          "one row per output position, one column per window cell")
    print("  x =", x[0, :, :, 0].tolist())
    for r, row in enumerate(cols):
        print(f"  output ({r // 2}, {r % 2}) sees {row.tolist()}")
    gemm = (cols @ w.reshape(4, 1)).reshape(1, 2, 2, 1)              # N, OH, OW, OC
    direct = np.zeros((1, 2, 2, 1))
    for oh in range(2):                                              # the definition, as loops
        for ow in range(2):
            direct[0, oh, ow, 0] = np.sum(x[0, oh:oh + 2, ow:ow + 2, 0] * w[:, :, 0, 0])
    print(f"  w = {w[:, :, 0, 0].tolist()};  cols @ W = {gemm[0, :, :, 0].tolist()}")
    same = bool(np.array_equal(direct, gemm))
    print("direct loops == cols @ W:", same)
    results.update(cols_tiny=cols.tolist(), direct_equals_gemm=same)

    # ----- 2. col2im adds: overlapping windows share input cells -----------------------------
    shape = (1, 4, 4, 1)
    ones_cols = np.ones((16, 9))                                     # 4x4 outputs, 3x3 windows
    counts = im2col_ref.col2im(ones_cols, np.empty(shape), 3, 3, 1, 1, 1, 1, 1, 1)
    print("col2im(ones), 4x4 input, 3x3 kernel, padding 1: how many windows saw each cell")
    print("  ", counts[0, :, :, 0].astype(int).tolist())

    # dx of L = Σ conv(x, w)·G, three ways: finite differences, col2im with +=, col2im with =
    xs = rng.standard_normal((2, 4, 4, 2))
    ws = rng.standard_normal((3, 3, 2, 3))
    G = rng.standard_normal((2, 4, 4, 3))                            # random upstream gradient
    _, cache = conv2d_forward(xs, ws, 1, 1)
    dx_add, _ = conv2d_backward(G, cache)
    dcols = G.reshape(-1, 3) @ ws.reshape(18, 3).T                   # N*OH*OW, KH*KW*C
    dx_assign = col2im_assign(dcols, xs.shape, 3, 3, 1)
    numeric = np.empty_like(xs)
    h = 1e-6
    for idx in np.ndindex(xs.shape):
        xp, xm = xs.copy(), xs.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = np.sum((conv2d_forward(xp, ws, 1, 1)[0] - conv2d_forward(xm, ws, 1, 1)[0]) * G) / (2 * h)
    err_add = float(np.abs(dx_add - numeric).max())
    err_assign = float(np.abs(dx_assign - numeric).max())
    print(f"dx vs finite differences: col2im with +=  max abs err {err_add:.1e};  "
          f"with =  max abs err {err_assign:.1e}")
    report = tb.gradcheck(lambda x, w: F.conv2d(x, w, padding=1), tb.Tensor(xs, requires_grad=True),
                          tb.Tensor(ws, requires_grad=True), seed=args.seed)
    print(f"tinybin.gradcheck(F.conv2d): {'ok' if report.ok else 'FAILED'}, "
          f"max abs err {max(r.max_abs_error for r in report):.1e}")
    results.update(window_counts=counts[0, :, :, 0].astype(int).tolist(),
                   dx_error={"add": err_add, "assign": err_assign, "gradcheck_ok": report.ok})

    # ----- 3. reference vs Numba on a real layer shape ---------------------------------------
    Hs, C = STAGES[args.stage]
    N = args.batch
    xb = rng.standard_normal((N, Hs, Hs, C), dtype=np.float32)
    wb = (rng.standard_normal((3, 3, C, C), dtype=np.float32) * np.sqrt(2 / (9 * C))).astype(np.float32)
    Gb = rng.standard_normal((N, Hs, Hs, C), dtype=np.float32)
    cols_ref = columns(xb, 3, 3, 1, 1, im2col_ref)
    cols_nb = columns(xb, 3, 3, 1, 1, im2col_numba)                  # the first call loads/compiles
    diff_im2col = float(np.abs(cols_ref - cols_nb).max())
    dx_ref = im2col_ref.col2im(cols_ref, np.empty_like(xb), 3, 3, 1, 1, 1, 1, 1, 1)
    dx_nb = im2col_numba.col2im(cols_ref, np.empty_like(xb), 3, 3, 1, 1, 1, 1, 1, 1)
    diff_col2im = float(np.abs(dx_ref - dx_nb).max())

    def conv_step():                                                 # im2col, whatever TINYBIN_CONV says
        with kernels.settings(conv="im2col"):                             # (lesson 12 times Winograd)
            out, cache = conv2d_forward(xb, wb, 1, 1)
            conv2d_backward(Gb, cache)

    r = args.repeats
    ms = {
        "im2col": {"reference": median_ms(lambda: columns(xb, 3, 3, 1, 1, im2col_ref), r),
                   "numba": median_ms(lambda: im2col_numba.im2col(xb, cols_nb, 3, 3, 1, 1, 1, 1, 1, 1), r)},
        "col2im": {"reference": median_ms(lambda: im2col_ref.col2im(cols_ref, dx_ref, 3, 3, 1, 1, 1, 1, 1, 1), r),
                   "numba": median_ms(lambda: im2col_numba.col2im(cols_ref, dx_nb, 3, 3, 1, 1, 1, 1, 1, 1), r)},
    }
    del cols_ref, cols_nb
    # The floor for this approach: the three matrix products alone, into buffers made beforehand
    W2 = wb.reshape(9 * C, C)                                        # KH*KW*C, OC
    cols_ws = kernels.im2col(xb, 3, 3, (1, 1), (1, 1, 1, 1)).copy()  # N*OH*OW, KH*KW*C
    G2 = Gb.reshape(-1, C)                                           # N*OH*OW, OC
    out_buf, dw_buf, dcols_buf = np.empty_like(G2), np.empty_like(W2), np.empty_like(cols_ws)

    def gemms():
        np.matmul(cols_ws, W2, out=out_buf)                          # forward
        np.matmul(cols_ws.T, G2, out=dw_buf)                         # dw
        np.matmul(G2, W2.T, out=dcols_buf)                           # dcols, then col2im
    gemms()
    gemm_ms = median_ms(gemms, r)
    del cols_ws, dcols_buf
    with kernels.settings(reference=True):
        conv_step()                                                  # warm-up
        ref_conv = median_ms(conv_step, r)
    with kernels.settings(reference=False):
        conv_step()
        nb_conv = median_ms(conv_step, r)
    ms["conv fwd+bwd"] = {"reference": ref_conv, "numba": nb_conv}
    kernels.clear_workspaces()

    print(f"WRN-20-4 stage {args.stage} ({N}, {Hs}, {Hs}, {C}), 3x3, {C} -> {C}, float32, "
          f"median of {r} (ms):")
    for name, t in ms.items():
        print(f"  {name:13s} reference {t['reference']:8.1f}   numba {t['numba']:8.1f}   "
              f"(x{t['reference'] / t['numba']:.1f})")
    print(f"  the three GEMMs alone (forward, dw, dcols): {gemm_ms:.1f}")
    print(f"reference and numba agree: max abs diff {diff_im2col:.1e} (im2col), {diff_col2im:.1e} (col2im)")
    results.update(speed_ms={**ms, "gemms": gemm_ms}, shape=[N, Hs, Hs, C],
                   max_abs_diff={"im2col": diff_im2col, "col2im": diff_col2im})

    # ----- 4. a narrow layer: the columns cost more than the product ------------------------
    results["narrow"] = narrow_layer(args, rng)

    plt = lesson.pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(ms)
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, [ms[n]["reference"] for n in names], 0.4, label="NumPy reference")
    ax.bar(pos + 0.2, [ms[n]["numba"] for n in names], 0.4, label="Numba")
    ax.axhline(gemm_ms, color="k", ls="--", lw=1, label="the three GEMMs alone")
    ax.set_xticks(pos, names)
    ax.set_ylabel("ms (median)")
    ax.set_title(f"3×3 conv, batch {N}, {Hs}×{Hs}×{C}")
    ax.legend()
    lesson.save_figure(fig, args, FIGURES[0])
    lesson.finish(args, results)


def narrow_layer(args, rng):
    """WRN-20-1's first stage, 16 -> 16 channels: im2col against the direct kernels, in turn."""
    N, H, C = args.batch, 32, 16
    x = rng.standard_normal((N, H, H, C), dtype=np.float32)
    w = (np.sign(rng.standard_normal((3, 3, C, C))) * np.sqrt(2 / (9 * C))).astype(np.float32)
    G = rng.standard_normal((N, H, H, C), dtype=np.float32)
    times, outs = {"im2col": [], "direct": []}, {}
    for rep in range(args.repeats + 1):                              # round 0 compiles; then in turn
        for name in times:
            with kernels.settings(conv=name):
                t0 = time.perf_counter()
                out, cache = conv2d_forward(x, w, 1, 1)
                conv2d_backward(G, cache)
            if rep:
                times[name].append(1e3 * (time.perf_counter() - t0))
            outs[name] = out
    ms = {name: float(np.median(t)) for name, t in times.items()}
    gflop = 3 * 2 * N * H * H * 9 * C * C / 1e9                     # forward, dx, dw
    cols_mb, x_mb = N * H * H * 9 * C * 4 / 1e6, x.nbytes / 1e6
    print(f"WRN-20-1 stage 1 ({N}, {H}, {H}, {C}), 3x3, {C} -> {C}: the columns are {cols_mb:.0f} MB for an "
          f"input of {x_mb:.0f} MB, and the product behind them has only {C} columns")
    for name, t in ms.items():
        print(f"  {name:7s} fwd+bwd {t:7.1f} ms   {gflop / t * 1e3:5.1f} GFLOP/s")
    diff = float(np.abs(outs["im2col"] - outs["direct"]).max() / np.abs(outs["im2col"]).max())
    print(f"  direct / im2col: {ms['im2col'] / ms['direct']:.1f}x faster; outputs agree to {diff:.1e} (relative)")
    kernels.clear_workspaces()
    return {"ms": ms, "gflop": gflop, "cols_mb": cols_mb, "relative_difference": diff}


if __name__ == "__main__":
    main()
