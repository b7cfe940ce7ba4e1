"""A plain PyTorch WRN-20-k, written without tinybin: the idiomatic peer of `bench train --vs-torch`.

The same network as tinybin.models.wrn (pre-activation blocks, symmetric padding, the input BN
with learned g, o, 3×3 average-pool shortcut with zero channels appended, head unit → 1×1 conv →
final layer → global average pool; 1-bit convs forward c·sign(W), c = sqrt(2 / (k·k·C_in)),
backward the identity to the latent W), with the layers a PyTorch user would reach for:
`nn.BatchNorm2d` (one fused kernel, its running statistics updated inside it), `TF.avg_pool2d`,
`clamp(min=-1)` for sReLU, a small autograd Function for the straight-through sign. It carries
its own He-normal weights, not tinybin's: same architecture, sizes and work, not the same digits.

torch.compile (inductor, CPU) was tried on this module for a whole training step: a 70 s first
compile, then slower steps than eager (bench/peer.py's docstring has the figures), so it runs eager.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as TF
from torch import nn


class SignSTE(torch.autograd.Function):
    """c·sign(W) (sign(0) = +1) forward; the gradient passes to W unchanged."""

    @staticmethod
    def forward(ctx, w, c):
        return torch.where(w >= 0, c, -c).to(w.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class Conv(nn.Conv2d):
    """3×3 (or 1×1) conv without bias; bits=1 convolves with c·sign(W)."""

    def __init__(self, c_in, c_out, k=3, stride=1, bits=1):
        super().__init__(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.bits, self.c = bits, math.sqrt(2.0 / (k * k * c_in))

    def forward(self, x):
        w = SignSTE.apply(self.weight, self.c) if self.bits == 1 else self.weight
        return self._conv_forward(x, w, None)


class Unit(nn.Module):
    """Pre-activation: BN (no g, o) → ReLU for baseline2, sReLU = max(−1, x) for srelu."""

    def __init__(self, channels, variant):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False) if variant == "baseline2" else None

    def forward(self, x):
        return TF.relu(self.bn(x)) if self.bn is not None else x.clamp(min=-1.0)


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride, variant, bits):
        super().__init__()
        self.unit_a, self.conv_a = Unit(c_in, variant), Conv(c_in, c_out, 3, stride, bits)
        self.unit_b, self.conv_b = Unit(c_out, variant), Conv(c_out, c_out, 3, 1, bits)
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x):
        residual = self.conv_b(self.unit_b(self.conv_a(self.unit_a(x))))
        if self.stride != 1 or self.extra:
            x = TF.avg_pool2d(x, 3, self.stride, padding=1, count_include_pad=False)
            x = TF.pad(x, (0, 0, 0, 0, 0, self.extra))       # zero channels appended
        return residual + x


class PlainWRN(nn.Module):
    """WRN-depth-width, variant "baseline2" (BN → ReLU units, final BN) or "srelu" (sReLU units, ×1/T).
    forward: (N, 3, H, W) float pixels 0..255 -> logits (N, classes)."""

    def __init__(self, depth=20, width=1, variant="srelu", bits=1, temperature=40.0, num_classes=10):
        super().__init__()
        if variant not in ("baseline2", "srelu"):
            raise ValueError(f"the plain peer has baseline2 and srelu, not {variant!r}")
        n, (c1, c2, c3) = (depth - 2) // 6, (16 * width, 32 * width, 64 * width)
        self.input_bn = nn.BatchNorm2d(3)
        self.stem = Conv(3, c1, 3, 1, bits)
        blocks = []
        for c_in, c_out, stride in ((c1, c1, 1), (c1, c2, 2), (c2, c3, 2)):
            blocks += [Block(c_in if b == 0 else c_out, c_out, stride if b == 0 else 1, variant, bits) for b in range(n)]
        self.blocks = nn.Sequential(*blocks)
        self.unit = Unit(c3, variant)
        self.head = Conv(c3, num_classes, 1, 1, bits)
        self.final_bn = nn.BatchNorm2d(num_classes, affine=False) if variant == "baseline2" else None
        self.scale = 1.0 / temperature

    def forward(self, x):
        z = self.head(self.unit(self.blocks(self.stem(self.input_bn(x)))))
        z = self.final_bn(z) if self.final_bn is not None else z * self.scale
        return TF.adaptive_avg_pool2d(z, 1).flatten(1)
