"""WRN-depth-k ("ResNet 20-k") and the six variants listed in P2 §IV (METHOD.md says what is P2's).

    input (N, 32, 32, 3), raw pixels 0..255
    input_bn     per-channel input normalisation, no ReLU: a BN with learned g, o and batch statistics
                 (input_norm="bn", the authors' code) or fixed training-image statistics ("fixed", P2 Fig. 4)
    stem         3×3 conv 3 → 16k
    stage1       n blocks, 16k channels, 32×32
    stage2       n blocks, 32k channels, 16×16 (block0 downsamples)
    stage3       n blocks, 64k channels, 8×8   (block0 downsamples)
    head         unit → 1×1 conv 64k → classes (z) → final layer → global average pool → logits

with n = (depth − 2)/6 and, in every block, pre-activation units ("unit" → conv):

    out = shortcut(x) + conv_b(unit_b(conv_a(unit_a(x))))

P2's networks "use the post-activation architecture" (§III.A); tinybin's are pre-activation, like the
authors' released code and weights (lesson 11). input_norm="bn" learns g, o and uses batch statistics (the
authors' code), so it is a layer, not P2's pre-processing "provided that the shift and scale factors are not
learned" (§III.A). A unit is BN → ReLU (baselines) or a lone sReLU / ELU (BN-free); the final layer is BN, ×1/T,
or 1/T then mean-only BN. A variant is a row of VARIANTS naming both factories (models/units.py). Module
names are stable (`stem`, `stage2.block0.conv_a`, `head.conv`, ...): probes and export find layers by them.
"""
from __future__ import annotations

import functools
import inspect
import warnings

import numpy as np

from .. import functional as F
from .. import nn
from ..tensor import Tensor
from .units import (
    bn_affine_final,
    bn_affine_relu_unit,
    bn_final,
    bn_relu_unit,
    elu_unit,
    mean_bn_final,
    scale_final,
    scale_mean_bn_final,
    srelu_unit,
    unit_conv,
)

PADDINGS = ("symmetric", "tf-same")
INPUT_NORMS = ("bn", "fixed")


def default_temperature(bits: int, num_classes: int) -> float:
    """The authors' code's T, not P2's: 25 for CIFAR-100, else 40 (1-bit) and 80 (32-bit). P2 says only
    "between approximately 30 and 100" (§III.D; 25 is below it) and gives no T for its ELU net."""
    return 25.0 if num_classes == 100 else 40.0 if bits == 1 else 80.0


# variant -> (unit inside blocks and head, final layer before GAP): the six listed in P2 §IV.
# A new variant is one more row (tinybin.models.VARIANTS["name"] = (unit, final)).
VARIANTS = {
    "baseline1": (bn_affine_relu_unit, bn_affine_final),
    "baseline2": (bn_relu_unit, bn_final),
    "final-bn": (srelu_unit, bn_final),
    "srelu": (srelu_unit, scale_final),
    "elu": (elu_unit, scale_final),
    "mean-bn": (srelu_unit, scale_mean_bn_final),
}
# rows that are not the paper's: experiments that show why a design choice matters
ABLATIONS = {
    "mean-bn-no-scale": (srelu_unit, mean_bn_final),
}


def variant_factories(variant):
    """(unit, final) of a variant name; ValueError listing the known names for anything else."""
    table = {**VARIANTS, **ABLATIONS}
    if variant not in table:
        raise ValueError(f"unknown variant {variant!r}; valid: {', '.join(table)}")
    unit, final = table[variant]
    for kind, factory in (("unit", unit), ("final layer", final)):
        if not callable(factory):
            raise ValueError(f"variant {variant!r}: its {kind} {factory!r} is not a factory (a function of "
                             f"the channel count), e.g. srelu_unit or scale_final")
    return unit, final


def uses_temperature(variant) -> bool:
    """Whether the variant's final layer takes a temperature T (its factory has that argument)."""
    return "temperature" in inspect.signature(variant_factories(variant)[1]).parameters


class DownsampleShortcut(nn.Module):
    """3×3 average pool, stride 2 (pad cells excluded), then `extra` zero channels appended
    after the old ones. No 1×1 projection, no weights (the authors' code; P2 §III.A defers to P1)."""

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
        self.unit_a = unit(c_in)
        self.conv_a = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1 if stride == 1 else stride2_padding,
                                bits=bits, rng=rng)
        self.unit_b = unit(c_out)
        self.conv_b = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bits=bits, rng=rng)
        self.shortcut = DownsampleShortcut(c_out - c_in, stride2_padding) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        residual = unit_conv(self.unit_b, self.conv_b, unit_conv(self.unit_a, self.conv_a, x))
        return residual + (self.shortcut(x) if self.shortcut is not None else x)


class Head(nn.Module):
    """unit → 1×1 conv 64k → classes (z) → final layer (BN | ×1/T | ×1/T → mean-only BN) → global average pool."""

    def __init__(self, channels, num_classes, unit, final, bits, rng):
        super().__init__()
        self.unit = unit(channels)
        self.conv = nn.Conv2d(channels, num_classes, 1, bits=bits, rng=rng)
        self.final = final(num_classes)
        self.pool = nn.GlobalAvgPool()

    def forward(self, x):
        return self.pool(self.final(unit_conv(self.unit, self.conv, x)))


class WRN(nn.Module):
    """Wide residual network of P2; build it with `wrn(...)`."""

    def __init__(self, depth, width, num_classes, variant, bits, temperature, padding, input_norm, rng):
        super().__init__()
        unit, final = variant_factories(variant)
        final = final if temperature is None else functools.partial(final, temperature=temperature)
        n = (depth - 2) // 6
        stride2 = 1 if padding == "symmetric" else (0, 1, 0, 1)  # TF "same", 3×3 stride 2, even map
        self.config = dict(depth=depth, width=width, num_classes=num_classes, variant=variant, bits=bits,
                           temperature=temperature, padding=padding, input_norm=input_norm)
        c1, c2, c3 = 16 * width, 32 * width, 64 * width

        def stage(c_in, c_out, stride):  # n blocks; the first one changes width and map size
            return nn.Sequential(**{f"block{b}": Block(c_in if b == 0 else c_out, c_out, stride if b == 0 else 1,
                                                       unit, bits, stride2, rng) for b in range(n)})
        self.input_bn = nn.BatchNorm2d(3, affine=True) if input_norm == "bn" else nn.BatchNorm2d(3, frozen=True)
        self.stem = nn.Conv2d(3, c1, 3, stride=1, padding=1, bits=bits, rng=rng)
        self.stage1, self.stage2, self.stage3 = stage(c1, c1, 1), stage(c1, c2, 2), stage(c2, c3, 2)
        self.head = Head(c3, num_classes, unit, final, bits, rng)

    def forward(self, x):
        """x: (N, H, W, 3) raw pixels 0..255 (ndarray of any numeric dtype, or Tensor) -> logits (N, classes)."""
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, dtype=self.dtype))
        self._check_input(x.data)
        x = self.stem(self.input_bn(x))
        return self.head(self.stage3(self.stage2(self.stage1(x))))

    def _check_input(self, x):
        """ValueError for a batch that is not (N, H, W, 3); one warning when it looks scaled to [0, 1]."""
        if x.ndim != 4 or x.shape[3] != 3:
            hint = ("; it looks like NCHW: tinybin is NHWC, transpose it with x.transpose(0, 2, 3, 1)"
                    if x.ndim == 4 and x.shape[1] == 3 else "")
            raise ValueError(f"a WRN takes images (N, H, W, 3), got shape {x.shape}{hint}")
        if x.size and not getattr(self, "_warned_range", False) and 0 < float(x.max()) <= 1:  # not all-black
            self._warned_range = True  # once per model: the input BN is trained on raw pixels 0..255
            warnings.warn(f"this batch's pixels are all in [{float(x.min()):g}, {float(x.max()):g}]: a WRN "
                          f"expects raw pixels 0..255 (images scaled to [0, 1] give near-constant logits)",
                          stacklevel=4)

    def convs(self):
        """(name, Conv2d) in forward order: stem, 18 block convs, head conv for depth 20."""
        return [(name, m) for name, m in self.named_modules() if isinstance(m, nn.Conv2d)]

    def batch_norms(self):
        return [(name, m) for name, m in self.named_modules() if isinstance(m, nn.BatchNorm2d)]

    def extra_repr(self):
        c = self.config
        return (f"depth={c['depth']}, width={c['width']}, classes={c['num_classes']}, variant={c['variant']}, "
                f"bits={c['bits']}, T={c['temperature']}, padding={c['padding']}, input_norm={c['input_norm']}")


def temperature_for(variant, bits, num_classes=10):
    """The authors' T (default_temperature) for a variant with a ×1/T layer, None for the others:
    what `wrn` picks, with a warning, when no temperature is given."""
    return default_temperature(bits, num_classes) if uses_temperature(variant) else None


def check_arguments(depth, width, num_classes, variant, bits, temperature, padding, input_norm="bn"):
    """ValueError naming the first argument of `wrn` that cannot work (nothing is built)."""
    variant_factories(variant)  # an unknown name fails here, listing the known ones
    if not isinstance(depth, (int, np.integer)) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...), got {depth}")
    if not isinstance(width, (int, np.integer)) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    if bits not in (1, 32):
        raise ValueError(f"bits must be 1 or 32, got {bits}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes}")
    if temperature is not None and not uses_temperature(variant):
        raise ValueError(f"variant {variant!r} has no scale layer; temperature applies only to "
                         f"{', '.join(v for v in VARIANTS if uses_temperature(v))}")
    if temperature is not None and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def wrn(depth=20, width=4, num_classes=10, variant="baseline2", bits=1, temperature=None, padding="symmetric",
        input_norm="bn", rng=None) -> WRN:
    """WRN-depth-width for `num_classes` classes, one of the six variants P2 lists (§IV).

    variant: baseline1 (learned BN g, o everywhere), baseline2 (BN without g, o), final-bn (sReLU,
      one BN before GAP), srelu (sReLU, ×1/T before GAP), elu (ELU, ×1/T), mean-bn (sReLU, ×1/T,
      then mean-only BN without bias); or any row added to VARIANTS.
    input_norm: how every variant normalises its input (module `input_bn`, no ReLU): "bn", a BN with
      learned g, o and batch statistics (the authors' Keras code; the default), or "fixed", the
      pre-processing of P2 Fig. 4 (iii): x ↦ (x − μ)/sqrt(σ² + ε) with the per-channel μ, σ² of the
      training images, set once by `model.input_bn.fit_statistics(x_train)` before use.
    bits: 1 → every conv (stem and head included) is binarized; 32 → full precision.
    temperature: T of the ×1/T layer (srelu, elu, mean-bn); None → the authors' code's, with a warning.
    padding: "symmetric" (1 on each side everywhere) or "tf-same" (stride-2 conv and average pool
      pad 0 before and 1 after, as the authors' Keras models; needed to load their weights).
    rng: seed or np.random.Generator for the He-normal initialisation.

    Input: images (N, H, W, 3), NHWC, raw pixels 0..255 (uint8 or float; the input BN normalises
    them). Images scaled to [0, 1] give a warning, NCHW ones a ValueError.
    """
    check_arguments(depth, width, num_classes, variant, bits, temperature, padding, input_norm)
    if uses_temperature(variant):
        if temperature is None:
            temperature = default_temperature(bits, num_classes)
            warnings.warn(f"variant {variant!r} with no temperature: using the authors' T={temperature:g} "
                          f"({bits}-bit, {num_classes} classes)", stacklevel=2)
        temperature = float(temperature)
    return WRN(int(depth), int(width), int(num_classes), variant, bits, temperature, padding, input_norm,
               np.random.default_rng(rng))  # a seed, or a Generator (returned as it is)


def conv_weight_count(model: nn.Module) -> int:
    """Number of conv weights (= bits of storage for a 1-bit model)."""
    return sum(m.weight.size for m in model.modules() if isinstance(m, nn.Conv2d))
