"""The authors' released 1-bit WRN-20-10 models, loaded into tinybin's own `wrn`.

    from tinybin.zoo import load_mcdonnell
    model = load_mcdonnell("cifar10")      # the shipped file; "cifar100" downloads; or a .mat path
    logits = model(images_uint8_nhwc)

McDonnell-Lab/1-bit-per-weight ships its Keras models as MATLAB v5 files (read by
tinybin/matfile.py, NumPy only). Their layout:

    conv2d, conv2d_1, ... conv2d_19      uint8 bits (1, KH, KW, C_in, C_out), weight = c·(2b − 1),
                                         c = sqrt(2 / (KH·KW·C_in)): stem, 18 block convs, head 1×1
    batch_normalization_v1_N             input BN: (4, 3) = gamma, beta, moving mean, moving var;
                                         the 20 others: (2, C) = moving mean, moving var (no g, o)

The keys carry Keras's global layer counters (the CIFAR-100 file starts at `conv2d_40`), so only
their order matters: sorted by the number after the last `_` (none = 0), they are in network
order. That network is exactly `wrn(20, 10, variant="baseline2", bits=1, padding="tf-same")`:
input BN (g, o, no ReLU) → stem → 9 pre-activation blocks → BN → ReLU → 1×1 conv → BN → GAP,
with TensorFlow "same" padding (0 before, 1 after) on the stride-2 convs and average pools.

Only the bits are stored, so they are loaded as latent weights ±c: the model binarizes with
sign(0) = +1 and the same c, giving back c·(2b − 1) exactly. Every check that can fail — keys,
shapes, layer counts, non-binary bits — fails with a message naming the key.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from . import matfile
from .models import wrn

DEPTH, WIDTH = 20, 10


class ModelFileError(ValueError):
    """A released-model file is missing, truncated, or not laid out as the authors' files are."""


def read_mat(path) -> dict:
    """All arrays of a MATLAB v5 file (tinybin.matfile: NumPy only, numeric arrays only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        return matfile.read_mat(path)
    except (matfile.MatFileError, OSError) as e:
        raise ModelFileError(f"{path} is not a readable MATLAB v5 file of arrays ({e})") from None


def _layer_number(key: str) -> int:
    """Keras's counter: `conv2d_17` → 17, `conv2d` → 0."""
    m = re.search(r"_(\d+)$", key)
    return int(m.group(1)) if m else 0


def _sorted_keys(arrays: dict, prefix: str) -> list:
    """Keys `prefix` or `prefix_N`, in network order."""
    keys = [k for k in arrays if re.fullmatch(re.escape(prefix) + r"(_\d+)?", k)]
    return sorted(keys, key=_layer_number)


def conv_bits_to_weight(bits: np.ndarray, key: str = "conv") -> np.ndarray:
    """uint8 bits (1, KH, KW, C_in, C_out) → float32 weights c·(2b − 1), shape (KH, KW, C_in, C_out).

    Raises ModelFileError unless the array has that shape and holds only 0 and 1."""
    bits = np.asarray(bits)
    if bits.ndim == 5 and bits.shape[0] == 1:
        bits = bits[0]
    if bits.ndim != 4:
        raise ModelFileError(f"{key}: expected bits of shape (1, KH, KW, C_in, C_out), got {bits.shape}")
    values = np.unique(bits)
    if not np.all(np.isin(values, (0, 1))):
        raise ModelFileError(f"{key}: weights are not one bit each: values {values[:6].tolist()}"
                             f"{' ...' if len(values) > 6 else ''} (expected only 0 and 1)")
    kh, kw, c_in, _ = bits.shape
    c = np.float32(math.sqrt(2.0 / (kh * kw * c_in)))
    return np.where(bits == 1, c, -c).astype(np.float32)


def mcdonnell_file(model="cifar10", data_dir=None) -> Path:
    """The path of a released model: "cifar10" (shipped in datasets/), "cifar100" (downloaded into
    the data folder on first use; SHA-256 checked) or a .mat file's path."""
    from .data import known_file

    if model in ("cifar10", "cifar100"):
        return known_file(f"mcdonnell-{model}", data_dir)
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path} (--mcdonnell takes cifar10, cifar100 or a .mat file)")
    return path


def load_mcdonnell(path="cifar10", data_dir=None):
    """The released Keras 1-bit WRN-20-10 as a tinybin model in eval mode.

    `path`: "cifar10" (the shipped file), "cifar100" (downloaded on first use) or a .mat file.
    Classes (10 or 100) come from the head conv. BN layers use the file's moving averages
    (eps 1e-5); the input BN gets its gamma and beta too. Raises ModelFileError (a ValueError)
    naming what is wrong with a file that is not one of the authors'.
    """
    path = mcdonnell_file(path, data_dir)
    arrays = read_mat(path)
    conv_keys, bn_keys = _sorted_keys(arrays, "conv2d"), _sorted_keys(arrays, "batch_normalization_v1")
    if not conv_keys or not bn_keys:
        raise ModelFileError(f"{path} holds no conv2d* / batch_normalization_v1* arrays (keys: "
                             f"{', '.join(sorted(arrays)[:6]) or 'none'}): not a released 1-bit model")
    head = np.asarray(arrays[conv_keys[-1]])
    num_classes = int(head.shape[-1]) if head.ndim == 5 else 0
    if num_classes not in (10, 100):
        raise ModelFileError(f"{conv_keys[-1]} (the head conv) has shape {head.shape}: expected "
                             f"(1, 1, 1, {64 * WIDTH}, 10 or 100)")
    model = wrn(DEPTH, WIDTH, num_classes=num_classes, variant="baseline2", bits=1, padding="tf-same", rng=0)

    convs, bns = model.convs(), model.batch_norms()
    for kind, keys, layers in (("conv", conv_keys, convs), ("batch-norm", bn_keys, bns)):
        if len(keys) != len(layers):
            raise ModelFileError(f"{path}: {len(keys)} {kind} layers ({keys[0]} ... {keys[-1]}), "
                                 f"WRN-{DEPTH}-{WIDTH} has {len(layers)}: truncated or another network")

    for key, (name, conv) in zip(conv_keys, convs):
        w = conv_bits_to_weight(arrays[key], key)
        if w.shape != conv.weight.shape:
            raise ModelFileError(f"{key} ({name}): bits of shape {w.shape}, the model expects {conv.weight.shape}")
        conv.weight.data = w

    for i, (key, (name, bn)) in enumerate(zip(bn_keys, bns)):
        stats = np.asarray(arrays[key], dtype=np.float32)
        rows = 4 if i == 0 else 2  # the input BN also stores gamma and beta
        if stats.shape != (rows, bn.num_channels):
            raise ModelFileError(f"{key} ({name}): shape {stats.shape}, expected ({rows}, {bn.num_channels})")
        if not np.all(np.isfinite(stats)) or np.any(stats[-1] < 0):
            raise ModelFileError(f"{key} ({name}): non-finite values or a negative variance")
        if i == 0:
            bn.weight.data, bn.bias.data = stats[0].copy(), stats[1].copy()
        bn.running_mean, bn.running_var = stats[-2].copy(), stats[-1].copy()
        bn.inference_stats = "moving"
    return model.eval()


def load_npz_images(path):
    """(x, y) from an .npz holding `x` (N, 32, 32, 3) uint8 RGB and `y` labels (e.g. cifar100-test20.npz)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    with np.load(path, allow_pickle=False) as f:
        if "x" not in f.files or "y" not in f.files:
            raise ValueError(f"{path} needs arrays x (N, 32, 32, 3) and y (N,); it holds {', '.join(f.files)}")
        x, y = f["x"], f["y"].astype(np.int64).ravel()
    if x.ndim != 4 or x.shape[1:] != (32, 32, 3) or len(x) != len(y):
        raise ValueError(f"{path}: x has shape {x.shape} and y {y.shape}; expected (N, 32, 32, 3) and (N,)")
    return x, y
