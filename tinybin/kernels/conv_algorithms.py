"""Which algorithm runs each pass of a convolution: the table, and the plan it gives a layer.

A row of ALGORITHMS is one algorithm: its three passes (forward, input gradient, weight
gradient), each a function with the signature its pass has in every row,

    forward(x, w, stride, padding) -> out
    input_gradient(dout, w, x_shape, stride, padding) -> dx
    weight_gradient(x, dout, w_shape, stride, padding) -> dw

and, for each pass, which layers it can run. `plan(w_shape, stride, padding, dtype)` tries the
rows named by the `conv` setting in order (kernels/config.py; default "winograd4+direct+im2col"):
the first whose forward takes the layer runs it, and its gradients too where they take the
layer, im2col where they do not. im2col takes every layer and ends every order.

  - im2col (+ one matrix product; im2col_ref.py): ops/conv.py's formula as it stands;
  - direct (direct_ref.py, direct_numba.py): register-blocked loops over the input in place,
    layers whose output channels are a multiple of DIRECT_BLOCK (16): stride 1, and stride 2
    up to DIRECT_STRIDED_CHANNELS (32) input channels -- its input gradient by im2col then;
  - winograd2, winograd4, F(2×2, 3×3) and F(4×4, 3×3) (winograd_ref.py, conv_winograd.py):
    fewer multiplications, for 3×3 stride-1 layers with >= winograd_min_channels channels.

Why this order. `python -m tinybin bench conv` at batch 125, float32, forward + backward,
im2col's time over Winograd's on WRN-20-4's stages 32×32×64, 16×16×128, 8×8×256 (one run each,
on a shared 2-core machine at load average 13–17):
    serial (OPENBLAS_NUM_THREADS=1 TINYBIN_PARALLEL=0):  winograd2 1.02, 1.09, 1.41×;
                                                         winograd4 1.27, 1.18, 3.09×
    default threads:                                     winograd2 1.24, 1.22, 1.00×;
                                                         winograd4 1.16, 1.17, 1.18×
F(4×4) gains more and more steadily; in `python -m tinybin bench train --conv
im2col,winograd4+direct` (same machine, load ~20) a WRN-20-4 srelu training step took 1.69× less time
with it. Its float32 error is larger -- relative RMS error against the float64 convolution
~1.7e-6 against im2col's ~3e-7 and winograd2's ~2.5e-7 (1-bit weights, normal inputs;
lessons/12_winograd.py shows where it comes from) -- but far below what one mini-batch
changes, and the authors' released model keeps its 96.30 % (963/1000). Narrow layers lose
(WRN-20-1's 32×32×16 stage: 0.55–0.74×; the 3-channel stem more), hence winograd_min_channels
(64). Those run by the direct kernels: im2col's forward+backward time over direct's, WRN-20-1's
32×32×16 3.35×, 16×16×32 2.49×, 8×8×64 1.24× (F(4×4) there: 1.30×, so it keeps that stage); on
WRN-20-4's wide layers direct loses to F(4×4) (0.84–1.11× against 1.46–2.31×). The 3-channel
stem runs its forward and weight gradient direct (the latter over a padded copy; im2col's took
3.7× as long at batch 125) and its input gradient by im2col (C_in % DIRECT_BLOCK). Stride-2
layers (no Winograd) at batch 125, im2col's time over direct's, calls alternated in one process:
WRN-20-1's 32×32×16→32 forward 1.45×, dw 2.2×; 16×16×32→64 1.03×, 1.26× (another run, at 33 %
steal: 1.14×, 2.9×; 1.13×, 1.45×); but WRN-20-4's 32×32×64→128 0.78×, 1.18× and 16×16×128→256
0.59×, 0.54×, hence DIRECT_STRIDED_CHANNELS. The direct
kernels' first use compiles them, once (Numba's cache; `bench conv` prints how long).

A Winograd layer's weight gradient runs by Winograd too, unless winograd_weight_gradient=
"im2col". Its (m+2)² products each reduce over all tiles (a long inner dimension, a small C×OC result);
given to multi-threaded OpenBLAS as one batched matmul they collapsed on a busy machine
(0.03-0.92× im2col's dw with two busy processes on 2 cores), so they run as a Numba kernel
(winograd_numba.weight_products). At batch 125, calls alternated in one process, im2col's dw
time over Winograd F(4×4)'s: 1.4-1.6× quiet on WRN-20-1's 8×8×64 and WRN-20-4's three stages,
1.3-1.7× with two busy processes; on WRN-20-4 the dw by im2col was ~48 % of the convolutions'
time in a training step. Its float32 rounding is F(4×4)'s forward's (relative RMS ~4e-6
against float64, im2col's dw ~3e-7); the lessons' claims were measured again over their seeds
with it.

A batch whose shared workspace (columns.py) would pass WORKSPACE_LIMIT (160 MB) runs each
pass in a few even groups of images (`in_image_groups`): WRN-20-10's 32×32×160 layers at batch
125 took 368 MB by Winograd, and the training step's peak memory went from 2962 to 2706 MB (the
fastest PyTorch peer's: 2790), step time unchanged (grouped over whole: 1.01×, median of three
alternated pairs). Smaller layers and batches (WRN-20-1 and WRN-20-4 at batch 125) run whole.

float64 layers keep im2col where Winograd would run unless winograd_float64=True: float64 is what
gradient checks run in, and F(4×4)'s rounding there (~1e-14 relative, against im2col's ~1e-16)
makes central differences noisier -- a whole-network check of WRN-8-1 at step 1e-6 measured
2.4e-5 with it against 7.7e-6 with im2col (8.9e-8 and 7.2e-8 at step 1e-4).
"""
import functools
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..geometry import output_size
from . import conv_winograd
from .columns import col2im, im2col, workspace
from .config import current, implementation
from .registers import LANES, ROWS

DIRECT_BLOCK, DIRECT_Q = LANES, ROWS  # the direct kernels' register blocks (direct_numba.B, .Q): C_out a multiple of B
DIRECT_STRIDED_CHANNELS = 32          # the widest stride-2 layer (C_in) the direct kernels take (see above)


class Layer(NamedTuple):
    w_shape: tuple      # KH, KW, C, OC
    stride: tuple       # SH, SW
    padding: tuple      # PT, PB, PL, PR
    dtype: np.dtype


# ----- im2col: out = cols @ W, dw = colsᵀ @ G, dx = col2im(G @ Wᵀ)  (ops/conv.py derives them) -----
def im2col_forward(x, w, stride, padding):
    N, H, W_, _ = x.shape
    KH, KW, C, OC = w.shape
    OH, OW = output_size(H, W_, KH, KW, *stride, *padding)
    cols = im2col(x, KH, KW, stride, padding)                     # N*OH*OW, KH*KW*C (shared workspace)
    out = cols @ w.reshape(KH * KW * C, OC)                       # N*OH*OW, OC
    return out.reshape(N, OH, OW, OC)


def im2col_input_gradient(dout, w, x_shape, stride, padding):
    KH, KW, C, OC = w.shape
    G = dout.reshape(-1, OC)                                      # N*OH*OW, OC
    dcols = workspace((G.shape[0], KH * KW * C), dout.dtype)      # N*OH*OW, KH*KW*C (reuses cols)
    np.matmul(G, w.reshape(KH * KW * C, OC).T, out=dcols)
    return col2im(dcols, x_shape, KH, KW, stride, padding)        # N, H, W, C


def im2col_weight_gradient(x, dout, w_shape, stride, padding):
    KH, KW, C, OC = w_shape
    cols = im2col(x, KH, KW, stride, padding)                     # N*OH*OW, KH*KW*C
    return (cols.T @ dout.reshape(-1, OC)).reshape(w_shape)       # KH*KW*C, OC -> KH, KW, C, OC


# ----- direct: the input gradient for stride 1 only --------------------------------------------
def direct_forward(x, w, stride, padding):
    return implementation("direct").forward(x, w, padding, stride)


def direct_input_gradient(dout, w, x_shape, stride, padding, keep=None, floor=0.0):
    return implementation("direct").grad_input(dout, w, padding, keep, floor)


def direct_weight_gradient(x, dout, w_shape, stride, padding):
    return implementation("direct").grad_weights(x, dout, padding, w_shape[0], w_shape[1], stride)


# ----- Winograd F(m×m, 3×3): stride 1 only ----------------------------------------------------
def winograd_passes(m):
    """The three passes of conv_winograd.py with tile size m, in the common signatures."""
    def forward(x, w, stride, padding):
        return conv_winograd.forward(x, w, padding, m)

    def input_gradient(dout, w, x_shape, stride, padding):
        return conv_winograd.input_gradient(dout, w, x_shape, padding, m)

    def weight_gradient(x, dout, w_shape, stride, padding):
        return conv_winograd.weight_gradient(x, dout, padding, m)
    return forward, input_gradient, weight_gradient


# ----- which layers each pass takes: (layer, settings) -> bool -----------------------------------
def every_layer(layer, settings):
    return True


def direct_takes(layer, settings):
    """C_out a multiple of the register block; stride 1, or 2 with at most DIRECT_STRIDED_CHANNELS inputs."""
    strided = max(layer.stride) == 2 and layer.w_shape[2] <= DIRECT_STRIDED_CHANNELS
    return (layer.stride == (1, 1) or strided) and layer.w_shape[3] % DIRECT_BLOCK == 0


def direct_takes_input_gradient(layer, settings):
    """The forward kernel run backwards: stride 1, C_in a multiple of the block, every pad < the
    kernel size."""
    KH, KW, C, _ = layer.w_shape
    PT, PB, PL, PR = layer.padding
    return layer.stride == (1, 1) and C % DIRECT_BLOCK == 0 and max(PT, PB) < KH and max(PL, PR) < KW


def winograd_takes(layer, settings):
    """3×3, stride 1, every pad <= 2 (the input gradient's padding is 2 − pad), at least
    winograd_min_channels input and output channels, float32 (float64 too if winograd_float64)."""
    return (layer.w_shape[:2] == (3, 3) and layer.stride == (1, 1) and max(layer.padding) <= 2
            and min(layer.w_shape[2:]) >= settings.winograd_min_channels
            and (layer.dtype == np.float32 or settings.winograd_float64))


def winograd_takes_weight_gradient(layer, settings):
    return settings.winograd_weight_gradient == "winograd"


class Algorithm(NamedTuple):
    """A row of the table: three passes and the layers each takes (the forward decides the row).
    masks: its input gradient takes keep=, floor= and returns dx · (keep > floor) in the same pass
    (the backward of an activation folded into the conv: ops/conv.py); other rows' dx is masked after."""
    forward: Callable
    input_gradient: Callable
    weight_gradient: Callable
    takes: Callable
    takes_input_gradient: Callable
    takes_weight_gradient: Callable
    masks: bool = False


ALGORITHMS = {
    "im2col": Algorithm(im2col_forward, im2col_input_gradient, im2col_weight_gradient,
                        every_layer, every_layer, every_layer),
    "direct": Algorithm(direct_forward, direct_input_gradient, direct_weight_gradient,
                        direct_takes, direct_takes_input_gradient, every_layer, masks=True),
    "winograd2": Algorithm(*winograd_passes(2), winograd_takes, winograd_takes, winograd_takes_weight_gradient),
    "winograd4": Algorithm(*winograd_passes(4), winograd_takes, winograd_takes, winograd_takes_weight_gradient),
}


class Pass(NamedTuple):
    """One pass of a plan: the algorithm's name and its function; calling the pass calls it.
    masks: it takes keep=, floor= (Algorithm.masks; input gradients only)."""
    algorithm: str
    run: Callable
    masks: bool = False

    def __call__(self, *args, **mask):
        return self.run(*args, **mask)


class ConvPlan(NamedTuple):
    forward: Pass
    input_gradient: Pass
    weight_gradient: Pass


# ----- a large batch in groups of images, so that the shared workspace stays bounded ---------------
WORKSPACE_LIMIT = 160 << 20   # bytes of shared workspace (columns.py) one pass may take


def workspace_per_image(name, layer, x_shape) -> int:
    """Bytes of the shared workspace one image takes in each pass of algorithm `name`: im2col's
    columns, or Winograd's transformed tiles V and products M (dx and dw alike); direct takes none."""
    KH, KW, C, OC = layer.w_shape
    OH, OW = output_size(x_shape[1], x_shape[2], KH, KW, *layer.stride, *layer.padding)
    if name == "im2col":
        return OH * OW * KH * KW * C * layer.dtype.itemsize
    if name.startswith("winograd"):
        m = int(name[len("winograd"):])
        return (m + 2) ** 2 * -(-OH // m) * -(-OW // m) * (C + OC) * layer.dtype.itemsize
    return 0


def image_groups(N, per_image) -> list:
    """(first, end) image ranges whose workspace stays within WORKSPACE_LIMIT, as few and as even
    as that allows: one range when the batch fits."""
    count = max(1, -(-per_image * N // WORKSPACE_LIMIT))
    size = -(-N // count)
    return [(a, min(N, a + size)) for a in range(0, N, size)]


def _forward_in_groups(run, groups, x, w, stride, padding):
    parts = groups(x.shape)
    if len(parts) == 1:
        return run(x, w, stride, padding)
    out = None
    for a, b in parts:
        part = run(x[a:b], w, stride, padding)
        out = np.empty((x.shape[0],) + part.shape[1:], part.dtype) if out is None else out
        out[a:b] = part
    return out


def _input_gradient_in_groups(run, groups, dout, w, x_shape, stride, padding, **mask):
    parts = groups(x_shape)
    if len(parts) == 1:
        return run(dout, w, x_shape, stride, padding, **mask)
    dx = np.empty(x_shape, dout.dtype)
    for a, b in parts:
        part = dict(mask, keep=mask["keep"][a:b]) if mask else {}
        dx[a:b] = run(dout[a:b], w, (b - a,) + tuple(x_shape[1:]), stride, padding, **part)
    return dx


def _weight_gradient_in_groups(run, groups, x, dout, w_shape, stride, padding):
    (a, b), *rest = groups(x.shape)
    dw = run(x[a:b], dout[a:b], w_shape, stride, padding)
    for a, b in rest:
        dw = dw + run(x[a:b], dout[a:b], w_shape, stride, padding)
    return dw


_IN_GROUPS = {"forward": _forward_in_groups, "input_gradient": _input_gradient_in_groups,
              "weight_gradient": _weight_gradient_in_groups}


def in_image_groups(kind, name, run, layer) -> Callable:
    """The pass `run` (kind: "forward", "input_gradient" or "weight_gradient") over groups of
    images when the whole batch would take more workspace than WORKSPACE_LIMIT (WRN-20-10's
    32×32×160 layers at batch 125: 368 MB by Winograd). Every image's output and input gradient
    depend on that image alone, so they are the same either way; the weight gradient is the sum
    of the groups' in group order (rounded differently from one pass over the batch, the same on
    every run). Below the limit, `run` itself on the whole batch."""
    def groups(x_shape):
        return image_groups(x_shape[0], workspace_per_image(name, layer, x_shape))
    return functools.partial(_IN_GROUPS[kind], run, groups)


def plan(w_shape, stride, padding, dtype) -> ConvPlan:
    """The passes that run a conv layer with weights of w_shape (KH, KW, C, OC), stride (SH, SW),
    padding (PT, PB, PL, PR) and dtype, under the current settings."""
    settings = current()
    layer = Layer(tuple(w_shape), tuple(stride), tuple(padding), np.dtype(dtype))
    name = next(n for n in settings.conv if ALGORITHMS[n].takes(layer, settings))
    row = ALGORITHMS[name]
    dx = name if row.takes_input_gradient(layer, settings) else "im2col"
    dw = name if row.takes_weight_gradient(layer, settings) else "im2col"
    return ConvPlan(*(Pass(n, in_image_groups(kind, n, getattr(ALGORITHMS[n], kind), layer),
                           kind == "input_gradient" and ALGORITHMS[n].masks)
                      for kind, n in (("forward", name), ("input_gradient", dx), ("weight_gradient", dw))))
