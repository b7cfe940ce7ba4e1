"""Packed export: a 1-bit model stored at one bit per weight.

    python -m tinybin export runs/wrn --out wrn.packed.npz          # a checkpoint (or its run folder)
    python -m tinybin export ../shared/data/mcdonnell/CIFAR10_allparams.mat --out c10.npz
    python -m tinybin export --report --arch 20-10 --variant srelu    # operation counts, no file

    from tinybin.export import save_packed, load_packed
    save_packed(model, "wrn.packed.npz")
    model = load_packed("wrn.packed.npz")                           # eval mode

A 1-bit conv needs only the sign of each latent weight: its weights are c·(2b − 1) with the fixed
constant c = sqrt(2 / (KH·KW·C_in)). So the file (an uncompressed .npz) holds, per conv layer,
the bits packed eight to a byte (`np.packbits`); per BN layer one (rows, C) array of the
inference statistics it uses (mean, var — moving or recalibrated, in the dtype the model used)
and its gamma and beta where learned; and as JSON the architecture, each conv's shape and c,
each BN's row names, and which statistics were packed (`bn_stats`). WRN-20-10's 26.7 M weights take 3.34 MB
instead of the 107 MB of float32 latent weights.

The 1/T layer of the srelu, elu and mean-bn variants is folded into the head conv (`fold_temperature`,
on by default): the head is 1×1 conv → ×1/T → GAP, so a head multiplier c/T does the same and
the deployed net has no scale layer. Round trip: without folding, the loaded model computes
exactly what the original did — the same weights ±c, the same statistics — so the logits are
identical bit for bit. With folding, (Σ ±c·h)/T and Σ ±(c/T)·h round differently in float32:
the logits agree to about 1e-7 relative, the predictions are the same.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import nn
from .io import read_npz, save_npz
from .models import wrn
from .ops.binarize import pack_bits, unpack_bits

FORMAT = "tinybin-packed-1"


def _scale_layer(model):
    """(owner, attribute name) of the ×1/T layer right after the head conv (srelu, elu: the final
    layer; mean-bn: its first part), or None."""
    final = model.head.final
    if isinstance(final, nn.Scale):
        return model.head, "final"
    name, first = next(iter(final._modules.items()), (None, None))
    return (final, name) if isinstance(first, nn.Scale) else None


def pack(model, fold_temperature: bool = True) -> dict:
    """The arrays of the packed file for a 1-bit WRN (see the module docstring)."""
    config = dict(model.config)
    if config["bits"] != 1:
        raise ValueError(f"this model has {config['bits']}-bit weights: only a model trained with bits=1 can be "
                         f"stored at one bit per weight")
    scale = _scale_layer(model)
    fold = bool(fold_temperature and scale is not None)
    arrays, convs, bns = {}, {}, {}
    for name, conv in model.convs():
        multiplier = float(conv.multiplier)
        if fold and conv is model.head.conv:
            multiplier *= getattr(*scale).c  # ×1/T moves into the head's multiplier
        arrays[f"conv/{name}"] = pack_bits(conv.weight.data)
        convs[name] = dict(shape=list(conv.weight.shape), multiplier=multiplier)  # JSON keeps a float exactly
    for name, bn in model.batch_norms():
        mean, var = bn.inference_mean_var()
        rows = {"mean": mean, "var": None if bn.mean_only else var,
                "weight": None if bn.weight is None else bn.weight.data,
                "bias": None if bn.bias is None else bn.bias.data}
        rows = {k: np.asarray(v) for k, v in rows.items() if v is not None}
        arrays[f"bn/{name}"] = np.stack(list(rows.values()))  # (rows, C), the widest dtype of them
        bns[name] = list(rows)
    arch = {k: config[k] for k in ("depth", "width", "num_classes", "variant", "padding", "temperature", "input_norm")}
    arch.update(bits=1, temperature_folded=fold, convs=convs, bns=bns, bn_stats=packed_statistics(model))
    arrays["arch"] = np.frombuffer(json.dumps(arch).encode(), np.uint8)  # UTF-8 (a str array is UTF-32)
    arrays["format"] = np.array(FORMAT)
    return arrays


def packed_statistics(model):
    """Which BN statistics `pack` stores: "recalibrated" or "moving" (what eval mode uses now),
    None for a model without BN layers that use batch statistics (a fixed input norm has only its own)."""
    kinds = {"recalibrated" if bn.inference_stats == "recalibrated" or (bn.inference_stats == "auto" and
                                                                        int(bn.calib_batches) > 0) else "moving"
             for _, bn in model.batch_norms() if not bn.frozen}
    return None if not kinds else kinds.pop() if len(kinds) == 1 else "mixed"


def packed_arch(path) -> dict:
    """The JSON record of a packed file: architecture, layer shapes, and "bn_stats", the BN
    statistics it holds ("recalibrated", "moving", None; absent from files packed before it was recorded)."""
    with np.load(path, allow_pickle=False) as f:
        return json.loads(f["arch"].tobytes().decode())


def save_packed(model, path, fold_temperature: bool = True) -> int:
    """Write `model` (1-bit) packed to `path` (.npz); returns the file size in bytes."""
    save_npz(path, pack(model, fold_temperature))
    return Path(path).stat().st_size


def load_packed(path):
    """The model stored by `save_packed`, in eval mode (float32 weights ±c, stored BN statistics)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no packed model at {path}")
    arrays = read_npz(path, "a packed tinybin model")
    if "format" not in arrays or str(arrays["format"]) != FORMAT:
        raise ValueError(f"{path} is not a packed tinybin model (no '{FORMAT}' format marker)")
    arch = json.loads(arrays["arch"].tobytes().decode())
    model = wrn(arch["depth"], arch["width"], num_classes=arch["num_classes"], variant=arch["variant"], bits=1,
                temperature=arch["temperature"], padding=arch["padding"], rng=0,
                input_norm=arch.get("input_norm", "bn"))  # files from before input_norm: "bn"
    try:
        for name, conv in model.convs():
            shape, multiplier = tuple(arch["convs"][name]["shape"]), arch["convs"][name]["multiplier"]
            if shape != conv.weight.shape:
                raise ValueError(f"{path}: {name} has shape {shape}, the architecture says {conv.weight.shape}")
            conv.multiplier = multiplier
            # latent weights ±multiplier: the model's binarize(sign(0) = +1) gives them back exactly
            conv.weight.data = unpack_bits(arrays[f"conv/{name}"], shape, multiplier)
        for name, bn in model.batch_norms():
            rows = dict(zip(arch["bns"][name], arrays[f"bn/{name}"]))
            if bn.frozen:  # fixed statistics (input_norm="fixed")
                bn.set_statistics(rows["mean"], rows["var"])
            bn.running_mean = rows["mean"]
            if not bn.mean_only:
                bn.running_var = rows["var"]
            for key in ("weight", "bias"):
                if getattr(bn, key) is not None:
                    getattr(bn, key).data = rows[key].astype(np.float32)
            bn.inference_stats = "moving"
    except KeyError as e:
        raise ValueError(f"{path} is incomplete: no entry {e}") from None
    if arch["temperature_folded"]:
        setattr(*_scale_layer(model), nn.Scale(1.0))  # 1/T already sits in head.conv's multiplier
    return model.eval()
