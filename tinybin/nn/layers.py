"""Layers: Conv2d (32-bit or 1-bit), BatchNorm2d, activations, Scale, pooling, Sequential.

Each layer is a thin holder of parameters around one op of `tinybin.functional`; the maths and
its derivation live with the op (tinybin/ops/). Layout NHWC throughout.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import kernels
from ..tensor import Tensor
from .bn_statistics import BatchStatisticsPolicy
from .module import Module, Parameter

# BatchNorm2d's buffers, in state-dict order: (name, dtype, initial value)
_BUFFERS = (("running_mean", np.float32, 0), ("running_var", np.float32, 1), ("moving_batches", np.int64, 0),
            ("calib_mean", np.float64, 0), ("calib_var", np.float64, 1), ("calib_batches", np.int64, 0))
_BUFFER_DTYPES = {name: dtype for name, dtype, _ in _BUFFERS}


class Conv2d(Module):
    """y = conv(x, W) with W (KH, KW, C_in, C_out), no bias; `bits=1` convolves with c·sign(W).

    bits=32: W is used as is. bits=1 (P1): W is the full-precision *latent* weight
    that SGD trains; forward and backward use W_b = c·sign(W) with the fixed constant
    c = sqrt(2 / (k·k·C_in)), and the gradient reaches W unchanged (F.binarize's backward is the
    identity, not ×c). Both start He-normal, std sqrt(2 / fan_in), fan_in = k·k·C_in, so a
    1-bit layer's weights have the same scale as the 32-bit layer's would.

    padding: int, or (top, bottom, left, right) — TensorFlow "same" on a stride-2 layer is
    (0, 1, 0, 1).
    """

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, padding=0, bits: int = 32, rng=None):
        super().__init__()
        if bits not in (1, 32):
            raise ValueError(f"bits must be 1 or 32, got {bits}")
        self.c_in, self.c_out, self.k, self.stride, self.bits = c_in, c_out, k, stride, bits
        self.padding = padding if isinstance(padding, int) else tuple(int(p) for p in padding)
        fan_in = k * k * c_in
        self.multiplier = math.sqrt(2.0 / fan_in)  # He std; the 1-bit constant c
        w = np.random.default_rng(rng).standard_normal((k, k, c_in, c_out), dtype=np.float32) * np.float32(self.multiplier)
        self.weight = Parameter(w, decay=True)

    def effective_weight(self) -> Tensor:
        """The weight the convolution uses: c·sign(W) for 1-bit, W for 32-bit."""
        if self.bits == 1:
            return F.binarize(self.weight, self.multiplier)
        return self.weight

    def forward(self, x, floor=None):
        """floor: convolve max(x, floor), an activation folded in (F.conv2d)."""
        return F.conv2d(x, self.effective_weight(), stride=self.stride, padding=self.padding, floor=floor)

    def extra_repr(self):
        return (f"{self.c_in}, {self.c_out}, k={self.k}, stride={self.stride}, padding={self.padding}, "
                f"bits={self.bits}")


class BatchNorm2d(BatchStatisticsPolicy, Module):
    """Per-channel batch norm (P1; Ioffe & Szegedy 2015): y = g·(x − μ)/sqrt(σ² + ε) + o.

    affine: learn g (init 1) and o (init 0); otherwise they are fixed at 1 and 0 (baseline 2).
    mean_only: y = x − μ (+ o if affine) [Salimans & Kingma 2016], P2's variant 6.

    Training uses the batch's statistics; inference the moving averages or the recalibrated
    statistics, chosen by `inference_stats` ("auto", "moving", "recalibrated"): the policy of
    tinybin/nn/bn_statistics.py, which tinybin.torch.BatchNorm2d shares (recalibration:
    `tinybin.train.recalibrate_bn`). Buffers are float32/float64 arrays, cast to the input's
    dtype at use.

    frozen: fixed statistics, set once by `fit_statistics(images)` (or `set_statistics`), used in
    training as in eval: y = (x − μ)/sqrt(σ² + ε) (·g + o if affine), an affine map of x; moving
    averages are never updated and recalibration leaves the layer alone. Both kinds of buffers hold
    the statistics (float32 running_*, float64 calib_*), so every reader of inference statistics
    (export, torch bridge) sees them; the buffer `fitted` says whether they were ever set. This is
    the fixed per-channel input pre-processing of P2 Fig. 4 (iii).
    """

    def __init__(self, num_channels: int, affine: bool = False, mean_only: bool = False,
                 eps: float = 1e-5, momentum: float = 0.99, frozen: bool = False):
        super().__init__()
        self.num_channels, self.affine, self.mean_only, self.frozen = num_channels, affine, mean_only, bool(frozen)
        self.eps, self.momentum = eps, momentum
        if affine and not mean_only:
            self.weight = Parameter(np.ones(num_channels, np.float32), decay=False)
        else:
            self.weight = None
        self.bias = Parameter(np.zeros(num_channels, np.float32), decay=False) if affine else None
        for name, dtype, value in _BUFFERS:
            self.register_buffer(name, np.full(() if name.endswith("batches") else num_channels, value, dtype))
        if self.frozen:  # only frozen layers have it: the state dicts of the others are unchanged
            self.register_buffer("fitted", np.array(False))
        self.inference_stats = "auto"
        self._calib = None  # running sums while a recalibration pass is on

    # ----- what the statistics policy needs of a NumPy layer ------------------------------
    def _zeros64(self):
        return np.zeros(self.num_channels)

    def _store(self, name, value):
        setattr(self, name, np.asarray(value, _BUFFER_DTYPES[name]))

    def _moving_momentum(self):
        return self.momentum if int(self.moving_batches) > 0 else 0.0  # the first batch initialises

    # ----- fixed statistics ---------------------------------------------------------------
    def fit_statistics(self, x, chunk: int = 1000):
        """Set a frozen layer's statistics to the per-channel mean and biased variance of images
        x (N, H, W, C), any numeric dtype, over N, H and W (tinybin.data.channel_moments: float64,
        two passes over chunks of `chunk` images). Returns (mean, var), float64 (C,)."""
        from ..data.batching import channel_moments  # only this method needs the data layer

        x = x.data if isinstance(x, Tensor) else np.asarray(x)
        if x.ndim < 2 or x.shape[-1] != self.num_channels or x.size == 0:
            raise ValueError(f"fit_statistics expects (N, ..., {self.num_channels}) with N > 0, got {x.shape}")
        mean, var = channel_moments(x, chunk)
        self.set_statistics(mean, var)
        return mean, var

    def set_statistics(self, mean, var):
        """Give a frozen layer its statistics (C,): both the moving and the recalibrated buffers."""
        if not self.frozen:
            raise RuntimeError("set_statistics is for a frozen BatchNorm2d (frozen=True); this one learns "
                               "its statistics from batches")
        mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
        if mean.shape != (self.num_channels,) or var.shape != (self.num_channels,):
            raise ValueError(f"statistics must have shape ({self.num_channels},), got {mean.shape} and {var.shape}")
        self.running_mean, self.running_var = mean.astype(np.float32), var.astype(np.float32)
        self.calib_mean, self.calib_var = mean.copy(), var.copy()
        self.fitted = np.array(True)

    # ----- forward ------------------------------------------------------------------------
    def forward(self, x, relu: bool = False):
        """relu=True: max(0, y), the BN → ReLU of a unit. In training a full BN (not frozen, not
        mean-only) runs with its ReLU as one fused op (F.batch_norm_act; the fused_bn setting)."""
        if self.training and not self.frozen:
            if not self.mean_only and kernels.current().fused_bn:
                out, statistics = F.batch_norm_act(x, self.weight, self.bias, eps=self.eps, relu=relu,
                                                   return_stats=True)
                relu = False                                         # done inside
            else:
                out, statistics = F.batch_norm(x, self.weight, self.bias, eps=self.eps,
                                               mean_only=self.mean_only, return_stats=True)
            self.record_batch_statistics(statistics.mean, statistics.var)
        else:
            mean, var = self.inference_mean_var()
            out = F.batch_norm_inference(x, mean, None if self.mean_only else var, self.weight, self.bias,
                                         eps=self.eps)
        return F.relu(out) if relu else out

    def extra_repr(self):
        kind = "mean_only" if self.mean_only else "full"
        return (f"{self.num_channels}, affine={self.affine}, {kind}, eps={self.eps}, momentum={self.momentum}"
                + (", frozen" if self.frozen else ""))


class ReLU(Module):
    """max(0, x)"""
    floor = 0.0    # max(x, floor): what a conv takes in when this is folded into it (F.conv2d)

    def forward(self, x):
        return F.relu(x)


class SReLU(Module):
    """sReLU(x) = max(−1, x): the BN-free variants' activation (P2 §II.C, Eq. 5)."""
    floor = -1.0

    def forward(self, x):
        return F.srelu(x)


class ELU(Module):
    """x if x > 0 else alpha·(exp(x) − 1)"""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return F.elu(x, alpha=self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class Scale(Module):
    """y = c·x for a fixed constant c; with c = 1/T before global average pooling it is
    softmax temperature T (P2 §III.D, Eq. 6)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = float(c)

    def forward(self, x):
        return F.scale(x, self.c)

    def extra_repr(self):
        return f"c={self.c:g}"


class AvgPool2d(Module):
    """size×size average pool; padded cells are excluded from the average."""

    def __init__(self, size: int = 3, stride: int = 2, padding=1):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x):
        return F.avg_pool2d(x, size=self.size, stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return f"size={self.size}, stride={self.stride}, padding={self.padding}"


class GlobalAvgPool(Module):
    """(N, H, W, C) -> (N, C): the mean over H and W."""

    def forward(self, x):
        return F.global_avg_pool(x)


class Identity(Module):
    """y = x (a placeholder where a layer is optional)."""

    def forward(self, x):
        return x


class Sequential(Module):
    """Modules applied in order; children are named '0', '1', ... (or pass name=module pairs)."""

    def __init__(self, *modules, **named):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)
        for name, m in named.items():
            setattr(self, name, m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)
