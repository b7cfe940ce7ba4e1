"""Which algorithm runs each convolution: im2col, the direct kernels, or Winograd.

Three ways to compute a stride-1 convolution (ops/conv.py picks one per layer with the
functions below; stride-2 layers always use im2col + one GEMM):
  - im2col + one GEMM (im2col_ref.py): the columns are KH*KW times the input;
  - direct (direct_ref.py, direct_numba.py): register-blocked loops over the input in place,
    for layers whose output channels are a multiple of DIRECT_BLOCK (16);
  - Winograd F(2×2, 3×3) or F(4×4, 3×3) (winograd_ref.py, ops/conv_winograd.py): fewer
    multiplications, for 3×3 layers with at least min_channels input and output channels.

    TINYBIN_CONV=im2col|direct|winograd2|winograd4 python ...     # read at import
    kernels.use_conv("im2col")                             # switch from now on
    with kernels.use_conv("winograd2"):                    # ... or only inside a block
        ...

The default is winograd4. `python -m tinybin bench conv` at batch 125, float32, forward +
backward, im2col's time over Winograd's on WRN-20-4's stages 32×32×64, 16×16×128, 8×8×256
(one run each, on a shared 2-core machine at load average 13–17):
    serial (OPENBLAS_NUM_THREADS=1 TINYBIN_PARALLEL=0):  winograd2 1.02, 1.09, 1.41×;
                                                         winograd4 1.27, 1.18, 3.09×
    default threads:                                     winograd2 1.24, 1.22, 1.00×;
                                                         winograd4 1.16, 1.17, 1.18×
F(4×4) gains more and more steadily (1.16–3.09× against 1.00–1.41×); in `python -m tinybin
bench train --conv im2col,winograd4` (same machine, load ~20) a WRN-20-4 srelu training step
took 1.69× less time with it. Its float32 error is larger -- relative RMS error against
the float64 convolution ~1.7e-6 against im2col's ~3e-7 and winograd2's ~2.5e-7 (1-bit weights,
normal inputs; lessons/12_winograd.py shows where it comes from) -- but far below what one
mini-batch changes, and the authors' released model keeps its 96.30 % (963/1000).
Narrow layers lose (WRN-20-1's 32×32×16 stage: 0.55–0.74×; the 3-channel stem more), so
Winograd runs only where input and output have >= min_channels channels (64;
TINYBIN_CONV_MIN_CHANNELS, or use_conv(name, min_channels=...)).

The narrower stride-1 layers run by the direct kernels instead. In one `python -m tinybin bench
conv` run (threads, load average 1.8), im2col's forward+backward time over direct's: WRN-20-1's
32×32×16 3.35×, 16×16×32 2.49×, 8×8×64 1.24× (F(4×4) there: 1.30×, so it keeps that stage); on
WRN-20-4's wide layers direct loses to F(4×4) (0.84–1.11× against 1.46–2.31×). The direct
kernels need C_out % 16 == 0 (their register block); the 3-channel stem runs its forward direct
and its weight gradient by im2col. Their first use compiles for 10–25 s, once (Numba's cache).

The weight gradient of a Winograd layer is computed by im2col unless dw="winograd"
(TINYBIN_CONV_DW=winograd). Serial, Winograd's dw is the faster (whole conv 1.37, 1.75, 4.73×
im2col's in the run above), but its (m+2)² products each reduce over all tiles (a long inner
dimension, a small C×OC result), and multi-threaded OpenBLAS synchronises its threads many
times in each: with threads on the busy machine the whole conv fell to 0.23–0.57× im2col's.
im2col's dw, one product, is the robust choice.

float64 convolutions keep im2col unless float64=True (TINYBIN_CONV_FLOAT64=1): float64 is what
gradient checks run in, and F(4×4)'s rounding there (~1e-14 relative, against im2col's
~1e-16) makes central differences noisier -- a whole-network check of WRN-8-1 at step 1e-6
measured 2.4e-5 with it against 7.7e-6 with im2col (8.9e-8 and 7.2e-8 at step 1e-4).
"""
import os

import numpy as np

CONV_ALGORITHMS = {"im2col": 0, "direct": 0, "winograd2": 2, "winograd4": 4}  # name -> Winograd tile size m
DIRECT_BLOCK, DIRECT_Q = 16, 4  # the direct kernels' register blocks (direct_numba.B, .Q): C_out, C_in multiples
DEFAULT_CONV, DEFAULT_MIN_CHANNELS, DEFAULT_DW = "winograd4", 64, "im2col"  # measured: see above
_conv = {"conv": os.environ.get("TINYBIN_CONV", "").strip() or DEFAULT_CONV,       # checked when first used
         "min_channels": os.environ.get("TINYBIN_CONV_MIN_CHANNELS", "").strip() or str(DEFAULT_MIN_CHANNELS),
         "dw": os.environ.get("TINYBIN_CONV_DW", "").strip() or DEFAULT_DW,
         "float64": os.environ.get("TINYBIN_CONV_FLOAT64", "0").strip() not in ("", "0")}


class use_conv:
    """use_conv(name, min_channels=64, dw="im2col", float64=False) selects the algorithm of
    stride-1 convolutions (name in CONV_ALGORITHMS: "im2col" everywhere, "direct" wherever the
    direct kernels can, "winograd2"/"winograd4" for the wide 3×3 layers and direct for the
    others), the fewest input and output channels a layer needs to run by Winograd, how such a
    layer computes its weight gradient ("im2col" or "winograd"), and whether float64
    convolutions run by Winograd too (by default they keep im2col, see above; the direct kernels
    run float64 too). Takes effect at once; used as a context manager it restores the previous
    choice."""

    def __init__(self, name: str, min_channels: int = DEFAULT_MIN_CHANNELS, dw: str = DEFAULT_DW,
                 float64: bool = False):
        global _conv
        new = {"conv": name, "min_channels": str(min_channels), "dw": dw, "float64": bool(float64)}
        _check_conv(new, "use_conv")
        self.previous, _conv = _conv, new

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _conv
        _conv = self.previous
        return False


def _check_conv(settings, source):
    if settings["conv"] not in CONV_ALGORITHMS:
        raise ValueError(f"{source}: unknown convolution algorithm {settings['conv']!r}; "
                         f"known: {', '.join(CONV_ALGORITHMS)}")
    if not settings["min_channels"].isdigit():
        raise ValueError(f"{source}: min_channels must be an int >= 0, got {settings['min_channels']!r}")
    if settings["dw"] not in ("im2col", "winograd"):
        raise ValueError(f"{source}: dw must be 'im2col' or 'winograd', got {settings['dw']!r}")


def _settings():
    _check_conv(_conv, "TINYBIN_CONV / TINYBIN_CONV_MIN_CHANNELS / TINYBIN_CONV_DW")
    return _conv


def conv_algorithm() -> str:
    """The name of the selected convolution algorithm ("im2col", "direct", "winograd2" or "winograd4")."""
    return _settings()["conv"]


def conv_min_channels() -> int:
    """Winograd runs layers with at least this many input and output channels."""
    return int(_settings()["min_channels"])


def winograd_weight_gradient() -> bool:
    """True when layers run by Winograd compute their weight gradient by Winograd too."""
    return _settings()["dw"] == "winograd"


def winograd_tile(w_shape, stride, padding, dtype=np.float32) -> int:
    """The Winograd tile size m (2 or 4) for this layer, or 0 for im2col: Winograd runs 3×3,
    stride-1 layers with every pad <= 2 (the input gradient's padding is 2 - pad), at least
    min_channels input and output channels, in float32 (float64 too if asked)."""
    m = CONV_ALGORITHMS[conv_algorithm()]
    if (m and tuple(w_shape[:2]) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2
            and min(w_shape[2:]) >= conv_min_channels() and (dtype == np.float32 or _conv["float64"])):
        return m
    return 0


def direct_passes(w_shape, stride, padding, dtype=np.float32) -> tuple:
    """(forward, dx, dw): which passes of this layer the direct kernels run (direct_numba.py).

    Stride-1 layers that Winograd does not take, unless the algorithm is "im2col", with C_out a
    multiple of DIRECT_BLOCK; dx (the forward kernel run backwards) also needs C_in a multiple
    of it and every pad < the kernel size; dw needs C_in a multiple of DIRECT_Q."""
    KH, KW, C, OC = w_shape
    PT, PB, PL, PR = padding
    if (conv_algorithm() == "im2col" or tuple(stride) != (1, 1) or OC % DIRECT_BLOCK
            or winograd_tile(w_shape, stride, padding, dtype)):
        return False, False, False
    return True, C % DIRECT_BLOCK == 0 and max(PT, PB) < KH and max(PL, PR) < KW, C % DIRECT_Q == 0
