"""One model loader for every file a model comes in.

    from tinybin.loader import load_model
    model, info = load_model("runs/wrn20-1-srelu-1bit-seed0")    # eval mode

Reads a training checkpoint (checkpoint.npz or its run folder), a packed 1-bit export
(tinybin.export) or one of the authors' released models ("cifar10", "cifar100" or a .mat file,
tinybin.zoo). `info` says what it was: kind, name (for a one-line report), and for a checkpoint
its meta (config, epoch, ...).
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .export import FORMAT, load_packed
from .train.checkpoint import load_checkpoint
from .zoo import load_mcdonnell, mcdonnell_file


def _describe(model, extra):
    c = model.config
    fixed = ", fixed input norm" if c.get("input_norm") == "fixed" else ""
    return f"WRN-{c['depth']}-{c['width']} {c['variant']} {c['bits']}-bit, {c['num_classes']} classes{fixed}{extra}"


def is_packed(path: Path) -> bool:
    """Whether `path` is a packed export (an .npz with tinybin's format marker)."""
    if path.suffix != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            return "format" in f.files and str(f["format"]) == FORMAT
    except (ValueError, OSError, zipfile.BadZipFile):
        return False  # load_checkpoint then names what is wrong with it


def load_model(source, data_dir=None):
    """(model in eval mode, info) from a checkpoint, a packed export or the authors' model.

    info: {"kind": "checkpoint" | "packed" | "mcdonnell", "name": str, "meta": dict or None}.
    Raises FileNotFoundError or ValueError (tinybin.zoo.ModelFileError) naming the file.
    """
    source = str(source)
    path = Path(source)
    if source in ("cifar10", "cifar100") or path.suffix == ".mat":
        path = mcdonnell_file(source, data_dir)
        model = load_mcdonnell(path)
        return model, {"kind": "mcdonnell", "name": f"{path.name} ({_describe(model, '')})", "meta": None}
    if is_packed(path):
        model = load_packed(path)
        return model, {"kind": "packed", "name": f"{path.name} ({_describe(model, ', packed')})", "meta": None}
    model, meta = load_checkpoint(path)
    folder = path if path.is_dir() else path.parent
    epoch = f", epoch {meta['epoch']}"
    return model, {"kind": "checkpoint", "name": f"{folder.name} ({_describe(model, epoch)})", "meta": meta}
