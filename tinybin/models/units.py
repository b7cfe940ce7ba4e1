"""The building blocks a variant names (models/wrn.py's VARIANTS): the unit before every conv and the
final layer before the global average pool, each a factory of the channel count; and `unit_conv`,
which folds a lone ReLU or sReLU unit into the conv it feeds."""
from __future__ import annotations

from .. import nn


class Unit(nn.Module):
    """The pre-activation unit before a conv: BN → ReLU (baselines) or a lone sReLU / ELU (BN-free)."""

    def __init__(self, bn, act):
        super().__init__()
        self.bn, self.act = bn, act

    def forward(self, x):  # BN → ReLU as one op (fused in training), unless hooks watch the two apart
        fuse = self.bn is not None and type(self.act) is nn.ReLU and not (self.bn._hooks or self.act._hooks)
        return self.bn(x, relu=True) if fuse else self.act(self.bn(x) if self.bn is not None else x)


def unit_conv(unit, conv, x):
    """conv(unit(x)). A Unit that is a lone ReLU or sReLU is folded into the conv (F.conv2d's floor: the
    same numbers; where the direct kernels run the conv's input gradient, one pass over memory fewer)
    unless hooks watch the unit, its activation or the conv."""
    act = unit.act if type(unit) is Unit and unit.bn is None else None
    if type(act) not in (nn.ReLU, nn.SReLU) or unit._hooks or act._hooks or conv._hooks:
        return conv(unit(x))
    return conv(x, floor=act.floor)


# ----- units: channels -> Module ------------------------------------------------------------
def bn_relu_unit(channels):
    """BN (g = 1, o = 0 fixed) → ReLU: baseline 2."""
    return Unit(nn.BatchNorm2d(channels), nn.ReLU())


def bn_affine_relu_unit(channels):
    """BN with learned g, o → ReLU: baseline 1."""
    return Unit(nn.BatchNorm2d(channels, affine=True), nn.ReLU())


def srelu_unit(channels):
    """sReLU = max(−1, x), no BN (P2 §II.C, Eq. 5; §III.C)."""
    return Unit(None, nn.SReLU())


def elu_unit(channels):
    """ELU (α = 1), no BN (P2 variant 5)."""
    return Unit(None, nn.ELU(1.0))


# ----- final layers before the global average pool: (channels[, temperature]) -> Module ------
# A factory that takes `temperature` gets T (the authors' value when none is given).
def bn_final(channels):
    """BN without g, o (baseline 2, final-bn)."""
    return nn.BatchNorm2d(channels)


def bn_affine_final(channels):
    """BN with learned g, o (baseline 1)."""
    return nn.BatchNorm2d(channels, affine=True)


def scale_final(channels, temperature):
    """×1/T: a softmax temperature, the paper's replacement for the final BN (P2 §III.D)."""
    return nn.Scale(1.0 / temperature)


def scale_mean_bn_final(channels, temperature):
    """×1/T, then mean-only BN without bias: tinybin's reading of P2's variant 6 (§IV), whose words do
    not name ×1/T; without it the net explodes at lr 0.1 (the ablation below)."""
    return nn.Sequential(scale=nn.Scale(1.0 / temperature), bn=nn.BatchNorm2d(channels, mean_only=True))


def mean_bn_final(channels):
    """Mean-only BN without bias and *without* ×1/T. An ablation, not one of the paper's variants:
    it exists to show why the division matters — at lr 0.1 the logits explode within a few steps."""
    return nn.BatchNorm2d(channels, mean_only=True)
