"""Files written atomically: a crash or Ctrl-C never leaves half a file under the real name."""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """with atomic_write(path) as f: ... — writes a temporary file beside `path` and renames it
    over `path` (os.replace, atomic on one file system) only once the block has finished."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are not secret
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz(path, arrays: dict):
    """np.savez to `path` atomically."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def write_text(path, text: str):
    """`path`.write_text(text), atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
