"""tinybin's layers in PyTorch, computing what tinybin's ops compute (tinybin/ops, tinybin/nn).

Layout: tensors are NCHW as torch expects (they may be channels_last in memory); conv weights
are (C_out, C_in, KH, KW). Every layer keeps tinybin's conventions:
  * 1-bit conv: forward with c·sign(W), sign(0) = +1, backward the identity to the latent W;
  * asymmetric padding (top, bottom, left, right), e.g. TensorFlow "same" (0, 1, 0, 1);
  * average pooling that leaves padded cells out of the average;
  * batch norm with biased variance, optional learned g and o, mean-only, moving averages that
    start from the first batch, post-training recalibration, and (across processes) statistics
    of the global batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as TF
from torch import nn

from ..nn.bn_statistics import BatchStatisticsPolicy
from .distributed import all_reduce_sum


def as_padding(padding):
    """int p or (top, bottom, left, right) -> 4 ints (tinybin's convention)."""
    return (int(padding),) * 4 if isinstance(padding, int) else tuple(int(p) for p in padding)


def pad2d(x, pads):
    """Zero-pad H and W of an NCHW tensor by (top, bottom, left, right)."""
    t, b, l, r = pads
    return TF.pad(x, (l, r, t, b)) if any(pads) else x


class Binarize(torch.autograd.Function):
    """W_b = c·sign(W) with sign(0) = +1;  dL/dW := dL/dW_b (identity, unscaled, unclipped).

    The constant c lives inside the op: writing c * ste_sign(W) through autograd would multiply
    the latent gradient by c and silently lower the learning rate.
    Reference: McDonnell 2018 (arXiv:1802.08530) §2; McDonnell et al. 2019 §III.B (Fig. 3).
    """

    @staticmethod
    def forward(ctx, w, multiplier):
        return torch.where(w >= 0, w.new_tensor(multiplier), w.new_tensor(-multiplier))

    @staticmethod
    def backward(ctx, dout):
        return dout, None


def binarize(w, multiplier):
    return Binarize.apply(w, float(multiplier))


class Conv2d(nn.Module):
    """y = conv(x, W), no bias; bits=1 convolves with c·sign(W), c = sqrt(2 / (k·k·C_in)).

    Shapes: x (N, C_in, H, W), weight (C_out, C_in, k, k) -> y (N, C_out, OH, OW).
    """

    def __init__(self, c_in, c_out, k, stride=1, padding=0, bits=32):
        super().__init__()
        self.c_in, self.c_out, self.k, self.stride, self.bits = c_in, c_out, k, stride, bits
        self.padding = as_padding(padding)
        self.multiplier = math.sqrt(2.0 / (k * k * c_in))
        self.weight = nn.Parameter(torch.empty(c_out, c_in, k, k))

    def effective_weight(self):
        return binarize(self.weight, self.multiplier) if self.bits == 1 else self.weight

    def forward(self, x):
        t, b, l, r = self.padding
        if t == b and l == r:   # torch pads symmetrically itself
            return TF.conv2d(x, self.effective_weight(), stride=self.stride, padding=(t, l))
        return TF.conv2d(pad2d(x, self.padding), self.effective_weight(), stride=self.stride)

    def extra_repr(self):
        return f"{self.c_in}, {self.c_out}, k={self.k}, stride={self.stride}, padding={self.padding}, bits={self.bits}"


class BatchNorm2d(BatchStatisticsPolicy, nn.Module):
    """y = g·(x − μ)/sqrt(σ² + ε) + o per channel; mean_only: y = x − μ (+ o).

    Training: μ, σ² (biased) of the batch — of the *global* batch when `process_group` is set
    (sums all-reduced in forward, their gradients all-reduced in backward). Inference: the moving
    averages or the recalibrated statistics, chosen by `inference_stats`: the policy of
    tinybin/nn/bn_statistics.py, shared with tinybin.nn.BatchNorm2d, whose buffers (same names,
    same dtypes) this layer holds.
    frozen: the fitted statistics in training too (no batch statistics, no all-reduce, no moving
    averages, no recalibration), as tinybin's frozen BatchNorm2d.
    Reference: Ioffe & Szegedy 2015 (Algorithm 2 for recalibration); Salimans & Kingma 2016.
    """

    def __init__(self, num_channels, affine=False, mean_only=False, eps=1e-5, momentum=0.99, frozen=False):
        super().__init__()
        self.num_channels, self.affine, self.mean_only, self.frozen = num_channels, affine, mean_only, bool(frozen)
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_channels)) if affine and not mean_only else None
        self.bias = nn.Parameter(torch.zeros(num_channels)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_channels, dtype=torch.float32))
        self.register_buffer("running_var", torch.ones(num_channels, dtype=torch.float32))
        self.register_buffer("moving_batches", torch.zeros((), dtype=torch.int64))
        self.register_buffer("calib_mean", torch.zeros(num_channels, dtype=torch.float64))
        self.register_buffer("calib_var", torch.ones(num_channels, dtype=torch.float64))
        self.register_buffer("calib_batches", torch.zeros((), dtype=torch.int64))
        if self.frozen:
            self.register_buffer("fitted", torch.tensor(False))
        self.inference_stats = "auto"
        self.process_group = None   # set by tinybin.torch.synchronise_batch_norm
        self._calib = None

    # ----- what the statistics policy needs of a PyTorch layer -------------------------------
    def _zeros64(self):
        return torch.zeros(self.num_channels, dtype=torch.float64, device=self.running_mean.device)

    def _store(self, name, value):
        getattr(self, name).copy_(torch.as_tensor(value))

    def _moving_momentum(self):
        # a tensor, not int(moving_batches): that would wait for the GPU on every batch
        return torch.where(self.moving_batches > 0, self.momentum, 0.0)  # the first batch initialises

    def _batch_stats(self, x):
        C = x.shape[1]
        total = x.sum(dim=(0, 2, 3))                                            # C
        count = total.new_full((1,), x.numel() // C)
        if self.process_group is not None:    # one all-reduce for the sums and the count
            packed = all_reduce_sum(torch.cat([total, count]), self.process_group)
            total, count = packed[:C], packed[C:].detach()
        mean = total / count                                                    # C
        xc = x - mean.view(1, C, 1, 1)                                          # N, C, H, W
        if self.mean_only:
            return xc, mean, None
        var = all_reduce_sum((xc * xc).sum(dim=(0, 2, 3)), self.process_group) / count  # C, biased
        return xc, mean, var

    def forward(self, x):
        if self.frozen or not self.training:
            return self._with_stored_statistics(x)
        C = self.num_channels
        xc, mean, var = self._batch_stats(x)
        with torch.no_grad():
            self.record_batch_statistics(mean.detach(), None if var is None else var.detach())
        if self.mean_only:
            out = xc
        else:
            out = xc * (1.0 / torch.sqrt(var + self.eps)).view(1, C, 1, 1)
            if self.weight is not None:
                out = out * self.weight.view(1, C, 1, 1)
        return out + self.bias.view(1, C, 1, 1) if self.bias is not None else out

    def _with_stored_statistics(self, x):
        """Eval mode (and a frozen layer always): the same arithmetic as tinybin's eval branch,
        statistics in float64."""
        C, dtype = self.num_channels, x.dtype
        mean, var = self.inference_mean_var()
        if self.mean_only:
            out = x + (-mean).to(dtype).view(1, C, 1, 1)
        else:
            inv_std = 1.0 / torch.sqrt(var.double() + self.eps)
            if self.weight is None:
                out = x * inv_std.to(dtype).view(1, C, 1, 1) + (-mean.double() * inv_std).to(dtype).view(1, C, 1, 1)
            else:
                out = (x + (-mean).to(dtype).view(1, C, 1, 1)) * (self.weight * inv_std.to(dtype)).view(1, C, 1, 1)
        return out + self.bias.view(1, C, 1, 1) if self.bias is not None else out

    def extra_repr(self):
        kind = "mean_only" if self.mean_only else "full"
        return (f"{self.num_channels}, affine={self.affine}, {kind}, eps={self.eps}, momentum={self.momentum}"
                + (", frozen" if self.frozen else ""))


class NativeBatchNorm2d(BatchNorm2d):
    """BatchNorm2d trained with PyTorch's own fused kernel: the peer `bench train --vs-torch`
    times. In float32 its sums run in another order and less precisely (one SGD step of a
    WRN-8-1 baseline2 differed by up to 1 % from the formula's), so the bridge keeps the formula
    and only the benchmark uses this (`use_native_batch_norm`)."""

    def forward(self, x):
        count = x.numel() // x.shape[1]
        if self.frozen or not self.training or self.process_group is not None or self.mean_only or count < 2:
            return super().forward(x)
        # The kernel's own statistics, with no second pass over x: "running" buffers that it
        # overwrites (momentum 1) with the batch mean and the unbiased variance.
        mean, var = x.new_zeros(self.num_channels), x.new_ones(self.num_channels)
        out = TF.batch_norm(x, mean, var, self.weight, self.bias, training=True, momentum=1.0, eps=self.eps)
        with torch.no_grad():
            self.record_batch_statistics(mean, var * ((count - 1) / count))   # biased, as tinybin's
        return out


def use_native_batch_norm(net):
    """Make every BatchNorm2d of `net` a NativeBatchNorm2d (same parameters and buffers); returns net."""
    for module in net.modules():
        if type(module) is BatchNorm2d:
            module.__class__ = NativeBatchNorm2d
    return net


class SReLU(nn.Module):
    """max(−1, x); derivative 1 if x > −1 else 0 (0 at the kink, as tinybin)."""

    def forward(self, x):   # threshold: x if x > −1 else −1, one kernel each way (a where took two, and a mask)
        return TF.threshold(x, -1.0, -1.0)


class Scale(nn.Module):
    """y = c·x, a fixed constant (c = 1/T before global average pooling: softmax temperature T)."""

    def __init__(self, c):
        super().__init__()
        self.c = float(c)

    def forward(self, x):
        return x * self.c

    def extra_repr(self):
        return f"c={self.c:g}"


class AvgPool2d(nn.Module):
    """size×size average pool, stride, padding (int or (top, bottom, left, right)); padded cells
    are excluded from each average: out = window sum / number of real cells in the window."""

    def __init__(self, size=3, stride=2, padding=1):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, as_padding(padding)

    def forward(self, x):
        t, b, l, r = self.padding
        if t == b and l == r:   # PyTorch's own kernel leaves padded cells out just the same
            return TF.avg_pool2d(x, self.size, self.stride, padding=(t, l), count_include_pad=False)
        sums = TF.avg_pool2d(pad2d(x, self.padding), self.size, self.stride, divisor_override=1)
        ones = x.new_ones((1, 1) + tuple(x.shape[2:]))
        count = TF.avg_pool2d(pad2d(ones, self.padding), self.size, self.stride, divisor_override=1)
        return sums / count

    def extra_repr(self):
        return f"size={self.size}, stride={self.stride}, padding={self.padding}"


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C): the mean over H and W."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


class PadChannels(nn.Module):
    """Append `extra` all-zero channels after the existing ones (the downsampling shortcut)."""

    def __init__(self, extra):
        super().__init__()
        self.extra = int(extra)

    def forward(self, x):
        # pad, not cat with zeros: cat's result is NCHW even for channels_last inputs, and the
        # residual add and everything after the block would then mix layouts
        return TF.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x
