"""tinybin WRN <-> torch.nn.Module, with state and optimizer momentum, both ways.

    from tinybin.models import wrn
    from tinybin.torch import to_torch, from_torch
    net = to_torch(wrn(20, 1, variant="srelu", temperature=40))   # a torch.nn.Module
    model = from_torch(net)                                        # a tinybin WRN again

The torch module is built from the tinybin model's own layers, one by one, so it has whatever
the model has (which final layers the head holds, a scale layer or not) and the same names;
parameters, buffers and dtypes are copied, and a round trip is bit-identical. Only conv weights
change layout: tinybin (KH, KW, C_in, C_out) <-> torch (C_out, C_in, KH, KW).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

from .. import nn as tnn
from ..models import wrn as build_wrn
from ..models.units import Unit
from ..models.wrn import WRN as TbWRN
from ..models.wrn import Block as TbBlock
from ..models.wrn import DownsampleShortcut as TbShortcut
from ..models.wrn import Head
from . import layers as L
from .wrn import WRN, Block, Chain, DownsampleShortcut


def _children(module):
    """(name, child) of a tinybin module, in definition order."""
    return [(name, m) for name, m in module.named_modules() if name and "." not in name]


def _tensor(array):
    return torch.from_numpy(np.array(array, copy=True))


def _mirror(m):
    """The torch layer (with copied state) computing what tinybin layer `m` computes."""
    if isinstance(m, tnn.Conv2d):
        out = L.Conv2d(m.c_in, m.c_out, m.k, stride=m.stride, padding=m.padding, bits=m.bits)
        out.multiplier = m.multiplier
        out.weight = torch.nn.Parameter(_tensor(np.transpose(m.weight.data, (3, 2, 0, 1))))
        return out
    if isinstance(m, tnn.BatchNorm2d):
        out = L.BatchNorm2d(m.num_channels, affine=m.affine, mean_only=m.mean_only, eps=m.eps, momentum=m.momentum,
                            frozen=m.frozen)  # a frozen one's buffers include `fitted`
        for name in ("weight", "bias"):
            if getattr(m, name) is not None:
                setattr(out, name, torch.nn.Parameter(_tensor(getattr(m, name).data)))
        for name, value in m.named_buffers():
            setattr(out, name, _tensor(value))
        out.inference_stats = m.inference_stats
        return out
    simple = {tnn.ReLU: lambda: torch.nn.ReLU(), tnn.SReLU: L.SReLU, tnn.GlobalAvgPool: L.GlobalAvgPool,
              tnn.Identity: lambda: torch.nn.Identity(), tnn.ELU: lambda: torch.nn.ELU(m.alpha),
              tnn.Scale: lambda: L.Scale(m.c), tnn.AvgPool2d: lambda: L.AvgPool2d(m.size, m.stride, m.padding)}
    if type(m) in simple:
        return simple[type(m)]()
    children = [(name, _mirror(child)) for name, child in _children(m)]
    if isinstance(m, TbBlock):
        return Block(**dict(children))
    if isinstance(m, TbShortcut):
        return DownsampleShortcut(children + [("pad", L.PadChannels(m.extra))])
    if isinstance(m, TbWRN):
        return WRN(m.config, children)
    if isinstance(m, (Unit, Head, tnn.Sequential)):
        return Chain(children)
    raise TypeError(f"to_torch does not know tinybin module {type(m).__name__}")


def to_torch(model) -> WRN:
    """A torch.nn.Module computing exactly what tinybin WRN `model` computes, with its state and
    mode (train/eval) copied; dtype follows the model's arrays (float64 model -> float64 module)."""
    if not isinstance(model, TbWRN):
        raise TypeError(f"to_torch expects a tinybin WRN (tinybin.models.wrn(...)), got {type(model).__name__}")
    net = _mirror(model)
    net.train(model.training)
    return net


def unwrap(module):
    """The WRN inside a DistributedDataParallel (or DataParallel) wrapper."""
    while hasattr(module, "module") and not isinstance(module, WRN):
        module = module.module
    if not isinstance(module, WRN):
        raise TypeError(f"expected a module made by tinybin.torch.to_torch, got {type(module).__name__}")
    return module


def state_to_torch(state) -> dict:
    """tinybin state dict (name -> ndarray) -> torch state dict: conv weights (KH, KW, C_in, C_out)
    become (C_out, C_in, KH, KW); everything else is copied as is (dtype kept)."""
    return {k: _tensor(np.transpose(v, (3, 2, 0, 1)) if np.ndim(v) == 4 else v) for k, v in state.items()}


def state_from_torch(state) -> dict:
    """The inverse of state_to_torch: torch tensors (any device) -> tinybin's ndarrays."""
    out = {}
    for k, v in state.items():
        a = v.detach().cpu().numpy()
        out[k] = np.ascontiguousarray(np.transpose(a, (2, 3, 1, 0))) if a.ndim == 4 else a.copy()
    return out


def from_torch(module):
    """A tinybin WRN (same config, state, inference statistics and mode) from a module made by
    `to_torch` (or a DistributedDataParallel wrapping one). The config rebuilds frozen layers as
    frozen (input_norm="fixed"); their statistics and `fitted` flag come with the state."""
    net = unwrap(module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the config carries its temperature
        model = build_wrn(**net.config, rng=0)
    model.load_state_dict(state_from_torch(net.state_dict()))
    stats = {name: m.inference_stats for name, m in net.batch_norms()}
    for name, bn in model.batch_norms():
        bn.inference_stats = stats[name]
    model.train(net.training)
    return model


def synchronise_batch_norm(module, process_group):
    """Make every batch norm of `module` use the statistics of the global batch across the
    processes of `process_group` (None switches it off)."""
    for m in module.modules():
        if isinstance(m, L.BatchNorm2d):
            m.process_group = process_group
    return module
