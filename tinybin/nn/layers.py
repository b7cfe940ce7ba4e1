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
from .module import Module, Parameter


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

    def forward(self, x):
        return F.conv2d(x, self.effective_weight(), stride=self.stride, padding=self.padding)

    def extra_repr(self):
        return (f"{self.c_in}, {self.c_out}, k={self.k}, stride={self.stride}, padding={self.padding}, "
                f"bits={self.bits}")


class BatchNorm2d(Module):
    """Per-channel batch norm (P1; Ioffe & Szegedy 2015): y = g·(x − μ)/sqrt(σ² + ε) + o.

    affine: learn g (init 1) and o (init 0); otherwise they are fixed at 1 and 0 (baseline 2).
    mean_only: y = x − μ (+ o if affine) [Salimans & Kingma 2016], P2's variant 6.

    Training uses the batch's statistics. Inference uses stored ones, of two kinds, both kept:
      * moving averages, updated every training batch: s ← momentum·s + (1 − momentum)·s_batch
        (the authors' Keras code, momentum 0.99). Unlike Keras they start from the first batch's
        statistics, not from 0 and 1: with momentum 0.99 the initial values would otherwise
        dominate the averages (and the test accuracy shown after each epoch) for hundreds of steps;
        after that the two agree;
      * recalibrated statistics (the papers'): after training, weights frozen, the plain average
        of the per-batch means and biased variances over one epoch of augmented training batches
        (Ioffe & Szegedy, Algorithm 2) — see `tinybin.train.recalibrate_bn`.
    `inference_stats` picks: "auto" (recalibrated if computed, else moving), "moving" or
    "recalibrated". Buffers are float32/float64 arrays, cast to the input's dtype at use.

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
        self.register_buffer("running_mean", np.zeros(num_channels, np.float32))
        self.register_buffer("running_var", np.ones(num_channels, np.float32))
        self.register_buffer("moving_batches", np.zeros((), np.int64))
        self.register_buffer("calib_mean", np.zeros(num_channels, np.float64))
        self.register_buffer("calib_var", np.ones(num_channels, np.float64))
        self.register_buffer("calib_batches", np.zeros((), np.int64))
        if self.frozen:  # only frozen layers have it: the state dicts of the others are unchanged
            self.register_buffer("fitted", np.array(False))
        self.inference_stats = "auto"
        self._calib = None  # running sums while a recalibration pass is on

    # ----- statistics ---------------------------------------------------------------------
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

    def start_recalibration(self):
        """Begin averaging batch statistics; training-mode forwards now accumulate instead of
        updating the moving averages. A frozen layer keeps its statistics: nothing happens."""
        if not self.frozen:
            self._calib = [np.zeros(self.num_channels), np.zeros(self.num_channels), 0]

    def finish_recalibration(self):
        """Store the averages of the accumulated per-batch statistics."""
        if self.frozen:
            return
        sum_mean, sum_var, count = self._calib
        self._calib = None
        if count == 0:
            raise RuntimeError("recalibration saw no batches")
        self.calib_mean = sum_mean / count
        self.calib_var = sum_var / count
        self.calib_batches = np.array(count, np.int64)

    def inference_mean_var(self):
        """(mean, var) used in eval mode, per `inference_stats`; a frozen layer's fitted ones always."""
        if self.frozen:
            if not bool(self.fitted):
                raise RuntimeError("this frozen BatchNorm2d has no statistics yet: set them with "
                                   "fit_statistics(training_images) (wrn(input_norm='fixed'): model.input_bn)")
            return self.calib_mean, self.calib_var
        mode = self.inference_stats
        if mode not in ("auto", "moving", "recalibrated"):
            raise ValueError(f"inference_stats must be 'auto', 'moving' or 'recalibrated', got {mode!r}")
        if mode == "recalibrated" and int(self.calib_batches) == 0:
            raise RuntimeError("recalibrated statistics requested but never computed: run "
                               "tinybin.train.recalibrate_bn(model, batches) first, or use the moving averages")
        if mode == "recalibrated" or (mode == "auto" and int(self.calib_batches) > 0):
            return self.calib_mean, self.calib_var
        return self.running_mean, self.running_var

    # ----- forward ------------------------------------------------------------------------
    def forward(self, x, relu: bool = False):
        """relu=True: max(0, y), the BN → ReLU of a unit. In training a full BN (not frozen, not
        mean-only) runs with its ReLU as one fused op (F.batch_norm_act; kernels.use_fused_bn)."""
        if self.training and not self.frozen:
            if not self.mean_only and kernels.fused_bn():
                out, mean, var = F.batch_norm_act(x, self.weight, self.bias, eps=self.eps, relu=relu,
                                                  return_stats=True)
                relu = False                                         # done inside
            else:
                out, mean, var = F.batch_norm(x, self.weight, self.bias, eps=self.eps,
                                              mean_only=self.mean_only, return_stats=True)
            self._record_statistics(mean, var)
        else:
            mean, var = self.inference_mean_var()
            out = F.batch_norm_inference(x, mean, None if self.mean_only else var, self.weight, self.bias,
                                         eps=self.eps)
        return F.relu(out) if relu else out

    def _record_statistics(self, mean, var):
        """Add a training batch's statistics to the recalibration sums, or to the moving averages."""
        if self._calib is not None:
            self._calib[0] += mean
            if var is not None:
                self._calib[1] += var
            self._calib[2] += 1
        else:
            m = self.momentum if int(self.moving_batches) > 0 else 0.0  # the first batch initialises
            self.moving_batches = np.array(int(self.moving_batches) + 1, np.int64)
            self.running_mean = (m * self.running_mean + (1 - m) * mean).astype(np.float32)
            if var is not None:
                self.running_var = (m * self.running_var + (1 - m) * var).astype(np.float32)

    def extra_repr(self):
        kind = "mean_only" if self.mean_only else "full"
        return (f"{self.num_channels}, affine={self.affine}, {kind}, eps={self.eps}, momentum={self.momentum}"
                + (", frozen" if self.frozen else ""))


class ReLU(Module):
    """max(0, x)"""

    def forward(self, x):
        return F.relu(x)


class SReLU(Module):
    """sReLU(x) = max(−1, x): the BN-free variants' activation (P2 §IV)."""

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
    softmax temperature T (P2 §IV)."""

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
