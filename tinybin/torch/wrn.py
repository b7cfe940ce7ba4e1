"""The WRN's containers in PyTorch: the same tree, the same module names as tinybin.models.wrn.

`to_torch` builds these from a tinybin model, child by child, so the torch network has exactly
the layers the tinybin one has (an input BN — learned, or frozen with fixed statistics — a stem,
stages of blocks, a head whose layers run in the order they are defined) and state_dict keys
that are tinybin's own.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import BatchNorm2d, Conv2d


class Chain(nn.Module):
    """Children applied in the order they were added (tinybin defines modules in forward order:
    a unit is [bn,] act; the head is unit, conv, its final layer(s), pool; a stage its blocks)."""

    def __init__(self, children):
        super().__init__()
        for name, module in children:
            self.add_module(name, module)

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x


class Block(nn.Module):
    """out = shortcut(x) + conv_b(unit_b(conv_a(unit_a(x)))); shortcut None means identity."""

    def __init__(self, unit_a, conv_a, unit_b, conv_b, shortcut=None):
        super().__init__()
        self.unit_a, self.conv_a, self.unit_b, self.conv_b = unit_a, conv_a, unit_b, conv_b
        self.shortcut = shortcut

    def forward(self, x):
        residual = self.conv_b(self.unit_b(self.conv_a(self.unit_a(x))))
        return residual + (self.shortcut(x) if self.shortcut is not None else x)


class DownsampleShortcut(Chain):
    """3×3 average pool, stride 2 (padding excluded), then zero channels appended: no weights."""


class WRN(Chain):
    """WRN-depth-k of McDonnell et al. 2019 (§III.A, Fig. 2; §III.C, Fig. 4), converted from tinybin by `to_torch`.

    forward(x): x is (N, H, W, 3) — tinybin's NHWC — or (N, 3, H, W), of any numeric dtype (raw
    pixels 0..255); NHWC is viewed as NCHW without a copy (a channels_last tensor), so
    `model.to(memory_format=torch.channels_last)` keeps the whole network in that layout.
    `layout` ("auto", "nhwc", "nchw") settles inputs whose shape fits both.
    Returns logits (N, classes). `config` is the tinybin model's config (from_torch rebuilds it).
    """

    def __init__(self, config, children):
        super().__init__(children)
        self.config = dict(config)
        self.layout = "auto"

    def _as_nchw(self, x):
        if x.ndim != 4:
            raise ValueError(f"expected images (N, H, W, 3) or (N, 3, H, W), got shape {tuple(x.shape)}")
        layout = self.layout
        if layout == "auto":
            nhwc, nchw = x.shape[3] == 3, x.shape[1] == 3
            if nhwc == nchw:
                raise ValueError(f"cannot tell NHWC from NCHW for shape {tuple(x.shape)}: set model.layout "
                                 f"to 'nhwc' or 'nchw'")
            layout = "nhwc" if nhwc else "nchw"
        return x.permute(0, 3, 1, 2) if layout == "nhwc" else x

    def forward(self, x):
        x = torch.as_tensor(x)
        weight = self.stem.weight
        if x.dtype != weight.dtype or x.device != weight.device:
            x = x.to(device=weight.device, dtype=weight.dtype)
        return super().forward(self._as_nchw(x))

    def convs(self):
        """(name, Conv2d) in forward order."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, Conv2d)]

    def batch_norms(self):
        return [(n, m) for n, m in self.named_modules() if isinstance(m, BatchNorm2d)]

    def extra_repr(self):
        return ", ".join(f"{k}={v}" for k, v in self.config.items())
