"""What a probe reads: the named gradient points, the final BN layers, and each unit's floor."""
from __future__ import annotations

from .. import nn


def head_weight_grad(model):
    """dL/dW of the head conv's latent weights."""
    return model.head.conv.weight.grad


POINTS = {"logits": "", "z": "head.conv", "h": "head.conv:in", "head_x": "head.unit:in", "head_w": head_weight_grad}
GRAD_POINTS = tuple(POINTS)
GRAD_LABELS = {"logits": "dL/dlogits", "z": "dL/dz (head conv output)", "h": "dL/dh (head conv input)",
               "head_x": "dL/dx (head unit input = last block output)", "head_w": "dL/dW (head conv weights)"}


def final_batch_norms(model) -> list:
    """Names of the BN layers inside the head's final layer (final-bn, baselines, mean-bn)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.BatchNorm2d) and (name == "head.final" or name.startswith("head.final."))]


def unit_floor(unit):
    """The value below which a unit's output cannot go, and the tolerance for 'at the floor'."""
    act = getattr(unit, "act", unit)
    if isinstance(act, (nn.ReLU, nn.SReLU)):
        return act.floor, 0.0
    if isinstance(act, nn.ELU):
        return -act.alpha, 0.01 * act.alpha          # ELU only approaches −α: count ≤ −0.99α
    return None, None
