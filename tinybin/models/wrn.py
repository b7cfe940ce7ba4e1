"""WRN-depth-k ("ResNet 20-k") and the six variants of P2 (METHOD.md §1, §4).

    input (N, 32, 32, 3), raw pixels 0..255
    input_bn     BN with learned g, o on the 3 channels, no ReLU (acts as preprocessing)
    stem         3×3 conv 3 → 16k
    stage1       n blocks, 16k channels, 32×32
    stage2       n blocks, 32k channels, 16×16 (block0 downsamples)
    stage3       n blocks, 64k channels, 8×8   (block0 downsamples)
    head         unit → 1×1 conv 64k → classes (z) → final layer → global average pool → logits

with n = (depth − 2)/6 and, in every block, pre-activation units ("unit" → conv):

    out = shortcut(x) + conv_b(unit_b(conv_a(unit_a(x))))

A "unit" is BN → ReLU in the BN baselines, a lone sReLU (or ELU) in the BN-free variants; the
final layer is BN, mean-only BN or the constant scale 1/T. Module names are stable and readable
(`stem`, `stage2.block0.conv_a`, `head.conv`, ...): probes and export walk them.
"""
from __future__ import annotations

import warnings

import numpy as np

from .. import functional as F
from .. import nn
from ..tensor import Tensor

# variant -> (unit inside blocks and head, final layer before GAP)   METHOD.md §4
VARIANTS = {
    "baseline1": ("bn-relu-affine", "bn-affine"),
    "baseline2": ("bn-relu", "bn"),
    "final-bn": ("srelu", "bn"),
    "srelu": ("srelu", "scale"),
    "elu": ("elu", "scale"),
    "mean-bn": ("srelu", "mean-bn"),
}
PADDINGS = ("symmetric", "tf-same")


def default_temperature(bits: int, num_classes: int) -> float:
    """The authors' T (METHOD.md §4): 25 for CIFAR-100, else 40 for 1-bit and 80 for 32-bit."""
    if num_classes == 100:
        return 25.0
    return 40.0 if bits == 1 else 80.0


def _make_rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class Unit(nn.Module):
    """The pre-activation unit before a conv: BN → ReLU (baselines) or sReLU / ELU (BN-free)."""

    def __init__(self, kind: str, channels: int):
        super().__init__()
        if kind.startswith("bn-relu"):
            self.bn = nn.BatchNorm2d(channels, affine=kind.endswith("affine"))
            self.act = nn.ReLU()
        else:
            self.bn = None
            self.act = nn.SReLU() if kind == "srelu" else nn.ELU(1.0)

    def forward(self, x):
        return self.act(self.bn(x) if self.bn is not None else x)


class DownsampleShortcut(nn.Module):
    """3×3 average pool, stride 2 (pad cells excluded), then `extra` zero channels appended
    after the old ones. No 1×1 projection: no weights (METHOD.md §1)."""

    def __init__(self, extra: int, padding):
        super().__init__()
        self.extra = extra
        self.pool = nn.AvgPool2d(size=3, stride=2, padding=padding)

    def forward(self, x):
        return F.pad_channels(self.pool(x), self.extra)


class Block(nn.Module):
    """out = shortcut(x) + conv_b(unit_b(conv_a(unit_a(x)))); no activation after the add."""

    def __init__(self, c_in, c_out, stride, unit, bits, stride2_padding, rng):
        super().__init__()
        self.unit_a = Unit(unit, c_in)
        self.conv_a = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1 if stride == 1 else stride2_padding,
                                bits=bits, rng=rng)
        self.unit_b = Unit(unit, c_out)
        self.conv_b = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bits=bits, rng=rng)
        if stride != 1 or c_in != c_out:
            self.shortcut = DownsampleShortcut(c_out - c_in, stride2_padding)
        else:
            self.shortcut = None

    def forward(self, x):
        residual = self.conv_b(self.unit_b(self.conv_a(self.unit_a(x))))
        return residual + (self.shortcut(x) if self.shortcut is not None else x)


class Head(nn.Module):
    """unit → 1×1 conv 64k → classes → final layer (BN | ×1/T | mean-only BN) → global average pool.

    With `probe` set, the forward keeps the head conv's input h and output z (`head_in`,
    `head_out`) with `retain_grad()`, so after backward `head_out.grad` is dL/dz.
    """

    def __init__(self, channels, num_classes, unit, final, temperature, bits, rng):
        super().__init__()
        self.unit = Unit(unit, channels)
        self.conv = nn.Conv2d(channels, num_classes, 1, bits=bits, rng=rng)
        if final == "scale":
            self.final = nn.Scale(1.0 / temperature)
        else:
            self.final = nn.BatchNorm2d(num_classes, affine=final == "bn-affine", mean_only=final == "mean-bn")
        self.pool = nn.GlobalAvgPool()
        self.probe = False
        self.head_in = self.head_out = None

    def forward(self, x):
        h = self.unit(x)
        z = self.conv(h)
        if self.probe:
            self.head_in, self.head_out = h.retain_grad(), z.retain_grad()
        return self.pool(self.final(z))


class WRN(nn.Module):
    """Wide residual network of METHOD.md §1; build it with `wrn(...)`."""

    def __init__(self, depth, width, num_classes, variant, bits, temperature, padding, rng):
        super().__init__()
        unit, final = VARIANTS[variant]
        n = (depth - 2) // 6
        stride2 = 1 if padding == "symmetric" else (0, 1, 0, 1)  # TF "same", 3×3 stride 2, even map
        self.config = dict(depth=depth, width=width, num_classes=num_classes, variant=variant, bits=bits,
                           temperature=temperature, padding=padding)
        channels = [16 * width, 32 * width, 64 * width]
        self.input_bn = nn.BatchNorm2d(3, affine=True)
        self.stem = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bits=bits, rng=rng)
        c_in = channels[0]
        for s, c_out in enumerate(channels):
            blocks = nn.Sequential()
            for b in range(n):
                stride = 2 if (s > 0 and b == 0) else 1
                setattr(blocks, f"block{b}", Block(c_in, c_out, stride, unit, bits, stride2, rng))
                c_in = c_out
            setattr(self, f"stage{s + 1}", blocks)
        self.head = Head(c_in, num_classes, unit, final, temperature, bits, rng)

    # dL/dz for probes: set model.probe = True, run forward + backward, read model.head_out.grad
    probe = property(lambda self: self.head.probe,
                     lambda self, on: setattr(self.head, "probe", bool(on)))
    head_in = property(lambda self: self.head.head_in)
    head_out = property(lambda self: self.head.head_out)

    def forward(self, x):
        """x: (N, H, W, 3) raw pixels (ndarray of any numeric dtype, or Tensor) -> logits (N, classes)."""
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, dtype=self.stem.weight.dtype))
        x = self.stem(self.input_bn(x))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.head(x)

    def convs(self):
        """(name, Conv2d) in forward order: stem, 18 block convs, head conv for depth 20."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]

    def batch_norms(self):
        return [(name, m) for name, m in self.named_modules() if isinstance(m, nn.BatchNorm2d)]

    def extra_repr(self):
        c = self.config
        return (f"depth={c['depth']}, width={c['width']}, classes={c['num_classes']}, variant={c['variant']}, "
                f"bits={c['bits']}, T={c['temperature']}, padding={c['padding']}")


def wrn(depth=20, width=4, num_classes=10, variant="baseline2", bits=1, temperature=None, padding="symmetric",
        rng=None) -> WRN:
    """WRN-depth-width for `num_classes` classes, one of P2's six variants (METHOD.md §4).

    variant: baseline1 (learned BN g, o everywhere), baseline2 (BN without g, o), final-bn (sReLU,
      one BN before GAP), srelu (sReLU, ×1/T before GAP), elu (ELU, ×1/T), mean-bn (sReLU,
      mean-only BN before GAP). The input BN (learned g, o, no ReLU) is in every variant.
    bits: 1 → every conv (stem and head included) is binarized; 32 → full precision.
    temperature: T of the ×1/T layer (srelu, elu); None → the authors' value, with a warning.
    padding: "symmetric" (1 on each side everywhere) or "tf-same" (stride-2 conv and average pool
      pad 0 before and 1 after, as the authors' Keras models; needed to load their weights).
    rng: seed or np.random.Generator for the He-normal initialisation.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(VARIANTS)}")
    if not isinstance(depth, (int, np.integer)) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...), got {depth}")
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if bits not in (1, 32):
        raise ValueError(f"bits must be 1 or 32, got {bits}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    if VARIANTS[variant][1] == "scale":
        if temperature is None:
            temperature = default_temperature(bits, num_classes)
            warnings.warn(f"variant {variant!r} with no temperature: using the authors' T={temperature:g} "
                          f"({bits}-bit, {num_classes} classes)", stacklevel=2)
        elif not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        temperature = float(temperature)
    elif temperature is not None:
        raise ValueError(f"variant {variant!r} has no scale layer; temperature applies only to srelu and elu")
    return WRN(int(depth), int(width), int(num_classes), variant, bits, temperature, padding, _make_rng(rng))


def conv_weight_count(model: nn.Module) -> int:
    """Number of conv weights (= bits of storage for a 1-bit model)."""
    return sum(m.weight.size for m in model.modules() if isinstance(m, nn.Conv2d))
