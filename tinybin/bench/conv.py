"""Benchmark of the convolution: `python -m tinybin bench conv`.

For the three 3×3 convs of WRN-20-4 (stage maps 32×32×64, 16×16×128, 8×8×256; stride 1,
pad 1, C_in = C_out) at batch 125 in float32 it prints, per layer, medians of several repeats:

  fwd ms, fwd+bwd ms     conv2d_forward, and conv2d_forward + conv2d_backward (dx and dw)
  GFLOP/s                useful multiply-adds of fwd+bwd (3 × 2·N·OH·OW·KH·KW·C·OC) per second
  GEMM f / dx / dw ms    the three matrix products alone, on arrays made beforehand, into
                         preallocated outputs: the floor the im2col approach can reach
  ratio                  (fwd+bwd) / (sum of the three GEMMs); im2col, col2im and copies are
                         the difference (target <= 1.3)
  ref ms, speed-up       fwd+bwd with the NumPy reference kernels, and ref / Numba
  kern ms, ref, speed-up the kernels alone, as one fwd+bwd uses them (im2col twice, col2im
                         once): Numba, NumPy reference, and their ratio (target >= 5). The
                         whole conv cannot gain 5x: the GEMMs, the same in both, dominate it.

then, for the same layers and WRN-20-1's three stages (32×32×16, 16×16×32, 8×8×64), forward
and forward+backward with each convolution algorithm -- im2col, the direct kernels
(kernels/direct_numba.py), Winograd F(2×2, 3×3), Winograd F(4×4, 3×3) -- timed in turn within
every repeat so that a busy machine slows all alike, and im2col's time over each (the
speed-up). The winograd2 and winograd4 columns compute dw by im2col, the last column by
Winograd too (the default setting). The first table measures im2col, whatever the `conv` setting (TINYBIN_CONV) says.

and, measured in fresh processes, how long `import` plus a first small conv by each of the three
algorithms take: once with an empty Numba cache (compilation) and once with the cache the first
process wrote (what every later start costs; target < 2 s).
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .timer import median_ms

STAGES = [(32, 64), (16, 128), (8, 256)]  # (H = W, C) of WRN-20-4's three stages
NARROW = [(32, 16), (16, 32), (8, 64)]      # WRN-20-1's three stages
# label: the kernel settings it is timed under (every layer wide enough for Winograd here)
ALGORITHMS = {"im2col": dict(conv="im2col"), "direct": dict(conv="direct"),
              "winograd2": dict(conv="winograd2", winograd_weight_gradient="im2col"),
              "winograd4": dict(conv="winograd4", winograd_weight_gradient="im2col"),
              "w4, dw w4": dict(conv="winograd4", winograd_weight_gradient="winograd")}

FIRST_CONV = """
import time
t0 = time.perf_counter()
from tinybin.ops.conv import conv2d_forward, conv2d_backward  # tinybin first, as `python -m tinybin`
import numpy as np
t1 = time.perf_counter()
for channels, stride in ((64, 1), (64, 2), (16, 1)):  # Winograd, im2col (stride 2), direct (narrow)
    x = np.ones((2, 8, 8, channels), np.float32)
    w = np.ones((3, 3, channels, channels), np.float32)
    out, cache = conv2d_forward(x, w, stride, 1)
    conv2d_backward(out, cache)
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""


def startup_seconds():
    """(import s, first conv s) of a fresh process with an empty cache, then of a second one."""
    with tempfile.TemporaryDirectory() as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)  # a private, empty cache: forces compiling
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            result = subprocess.run([sys.executable, "-c", FIRST_CONV], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t
            if result.returncode != 0:
                raise RuntimeError(result.stderr)
            imp, first = map(float, result.stdout.split())
            runs.append((imp, first, wall))
    return runs


def run(batch=125, repeats=5, ref_repeats=2, quick=False, startup=True) -> dict:
    """Print the tables of the module docstring; returns their figures ({"im2col": ..., "algorithms": ...,
    "startup": ...})."""
    import numba

    from .. import kernels, threads

    if quick:
        batch, repeats, ref_repeats = 25, 3, 1
    N, R = batch, repeats
    rng = np.random.default_rng(0)
    figures = {}
    layer = (f"numba {numba.__version__}, kernels " + (f"parallel on {numba.config.NUMBA_NUM_THREADS} threads"
             if kernels.current().parallel else "serial") + f" (BLAS threads sleep when idle: {threads.blas_threads_sleep()})")
    print(f"conv2d benchmark: batch {N}, float32, 3x3 stride 1 pad 1, median of {R}; numpy {np.__version__}, {layer}")
    print("environment: " + ", ".join(f"{k}={os.environ.get(k, '-')}" for k in
          ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY",
           "OPENBLAS_THREAD_TIMEOUT")) + f"; load average {os.getloadavg()[0]:.2f}")
    with kernels.settings(conv="im2col"):
        figures["im2col"] = im2col_table(N, R, ref_repeats, rng)
    figures["algorithms"] = algorithm_table(N, R, rng)
    kernels.clear_workspaces()
    print(f"load average now {os.getloadavg()[0]:.2f} (other processes on the machine slow every figure)")

    if startup:
        (imp1, conv1, wall1), (imp2, conv2, wall2) = figures["startup"] = startup_seconds()
        print(f"start-up, empty Numba cache:  import {imp1:.2f} s + first convs fwd+bwd {conv1:.2f} s "
              f"(compiling) = {imp1 + conv1:.2f} s; process wall {wall1:.2f} s")
        print(f"start-up, second process:     import {imp2:.2f} s + first convs fwd+bwd {conv2:.2f} s "
              f"(cache) = {imp2 + conv2:.2f} s; process wall {wall2:.2f} s")
    return figures


def im2col_table(N, R, ref_repeats, rng):
    """The im2col convolution: whole, its GEMMs alone, its kernels alone, and the NumPy reference."""
    from .. import kernels
    from ..ops.conv import conv2d_backward, conv2d_forward

    figures = {}
    header = (f"{'layer':>12} {'fwd ms':>8} {'fwd+bwd':>8} {'GFLOP/s':>8} {'GEMM f':>7} {'dx':>7} {'dw':>7}"
              f" {'3 GEMMs':>8} {'ratio':>6} {'ref ms':>8} {'speed-up':>8} {'kern ms':>8} {'ref':>6} {'speed-up':>8}")
    print(header)
    for H, C in STAGES:
        x = rng.standard_normal((N, H, H, C), dtype=np.float32)
        w = rng.standard_normal((3, 3, C, C), dtype=np.float32)
        out, cache = conv2d_forward(x, w, 1, 1)                        # compiles / warms up
        dout = rng.standard_normal(out.shape, dtype=np.float32)
        conv2d_backward(dout, cache)

        fwd = median_ms(lambda: conv2d_forward(x, w, 1, 1), R)
        fwd_bwd = median_ms(lambda: conv2d_backward(dout, conv2d_forward(x, w, 1, 1)[1]), R)

        M, K = N * H * H, 9 * C                                        # GEMM sizes
        cols = np.array(kernels.im2col(x, 3, 3, (1, 1), (1, 1, 1, 1)))  # M, K (own copy)
        w2d, G = w.reshape(K, C), dout.reshape(M, C)
        out_f, out_dx, out_dw = np.empty((M, C), np.float32), np.empty((M, K), np.float32), np.empty((K, C), np.float32)
        gemm_f = median_ms(lambda: np.matmul(cols, w2d, out=out_f), R)
        gemm_dx = median_ms(lambda: np.matmul(G, w2d.T, out=out_dx), R)
        gemm_dw = median_ms(lambda: np.matmul(cols.T, G, out=out_dw), R)
        cols = out_dx = None                                           # free them before the reference runs
        gemms = gemm_f + gemm_dx + gemm_dw

        def kernels_once():
            """What one fwd+bwd runs of the kernels."""
            kernels.im2col(x, 3, 3, (1, 1), (1, 1, 1, 1))
            dcols = kernels.im2col(x, 3, 3, (1, 1), (1, 1, 1, 1))
            kernels.col2im(dcols, x.shape, 3, 3, (1, 1), (1, 1, 1, 1))

        kern = median_ms(kernels_once, R)
        with kernels.settings(reference=True):
            ref = median_ms(lambda: conv2d_backward(dout, conv2d_forward(x, w, 1, 1)[1]), ref_repeats)
            kern_ref = median_ms(kernels_once, ref_repeats)
        gflops = 3 * 2 * M * K * C / (fwd_bwd * 1e-3) / 1e9
        figures[f"{H}x{H}x{C}"] = dict(fwd_ms=fwd, fwd_bwd_ms=fwd_bwd, gflops=gflops, gemms_ms=gemms,
                                       ratio=fwd_bwd / gemms, ref_ms=ref, kernels_ms=kern, kernels_ref_ms=kern_ref)
        print(f"{f'{H}x{H}x{C}':>12} {fwd:8.1f} {fwd_bwd:8.1f} {gflops:8.1f} {gemm_f:7.1f} {gemm_dx:7.1f} {gemm_dw:7.1f}"
              f" {gemms:8.1f} {fwd_bwd / gemms:6.2f} {ref:8.1f} {ref / fwd_bwd:7.1f}x"
              f" {kern:8.1f} {kern_ref:6.1f} {kern_ref / kern:7.1f}x")
    return figures


def algorithm_table(N, R, rng):
    """Forward and forward+backward by each algorithm, timed in turn within every repeat (so not
    by median_ms: a busy machine then slows every algorithm of a round alike)."""
    from .. import kernels
    from ..ops.conv import conv2d_backward, conv2d_forward

    figures = {}
    print(f"3x3 stride-1 conv by algorithm (ms, median of {R} rounds, the algorithms in turn in each round; "
          f"speed-up = im2col / that algorithm; the conv setting: {','.join(kernels.current().conv)}, Winograd "
          f"from {kernels.current().winograd_min_channels} channels):")
    print(f"{'layer':>12} " + " ".join(f"{a + ' fwd':>14} {'fwd+bwd':>8}" + ("" if a == "im2col" else f" {'speed-up':>8}")
                                      for a in ALGORITHMS))
    for H, C in STAGES + NARROW:
        x = rng.standard_normal((N, H, H, C), dtype=np.float32)
        w = rng.standard_normal((3, 3, C, C), dtype=np.float32)
        dout = rng.standard_normal((N, H, H, C), dtype=np.float32)
        times = {a: ([], []) for a in ALGORITHMS}
        for rep in range(R + 1):                                       # round 0 compiles and warms up
            for a in ALGORITHMS:
                with kernels.settings(winograd_min_channels=1, **ALGORITHMS[a]):
                    t0 = time.perf_counter()
                    out, cache = conv2d_forward(x, w, 1, 1)
                    t1 = time.perf_counter()
                    conv2d_backward(dout, cache)
                    t2 = time.perf_counter()
                if rep:
                    times[a][0].append(t1 - t0)
                    times[a][1].append(t2 - t0)
        fwd = {a: 1e3 * float(np.median(f)) for a, (f, _) in times.items()}
        both = {a: 1e3 * float(np.median(b)) for a, (_, b) in times.items()}
        cells = []
        for a in ALGORITHMS:
            cells.append(f"{fwd[a]:14.1f} {both[a]:8.1f}" + ("" if a == "im2col" else f" {both['im2col'] / both[a]:7.2f}x"))
        note = f"   (the conv setting runs it by {kernels.conv_plan(w.shape, (1, 1), (1, 1, 1, 1), w.dtype).forward.algorithm})"
        print(f"{f'{H}x{H}x{C}':>12} " + " ".join(cells) + note)
        figures[f"{H}x{H}x{C}"] = dict(fwd_ms=fwd, fwd_bwd_ms=both)
    return figures

