"""Checkpoints: model, optimizer and the run's metadata in one .npz, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..io import read_npz, save_npz
from ..models import wrn
from .bn_stats import set_bn_stats


def save_checkpoint(path, model, optimizer, meta: dict):
    """model, optimizer and meta (JSON) in one .npz, written atomically (tmp + os.replace)."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def read_checkpoint(path):
    """(model state, optimizer state, meta) from a checkpoint file or a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    arrays = read_npz(path, "a tinybin checkpoint")
    if "meta" not in arrays:
        hint = "; it is a packed export" if "format" in arrays else ""
        raise ValueError(f"{path} is not a tinybin checkpoint (no 'meta' record{hint})")
    meta = json.loads(str(arrays["meta"]))
    model_state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
    optim_state = {k[6:]: v for k, v in arrays.items() if k.startswith("optim/")}
    return model_state, optim_state, meta


def load_checkpoint(path):
    """(model in eval mode, meta) from a checkpoint written by `train`."""
    model_state, _, meta = read_checkpoint(path)
    model = wrn(**meta["arch"])
    model.load_state_dict(model_state)
    set_bn_stats(model, meta.get("bn_stats", "auto"))
    return model.eval(), meta
