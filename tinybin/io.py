"""Files written atomically: a crash or Ctrl-C never leaves half a file under the real name; and
.npz files read as numbers only (allow_pickle=False: a file tinybin reads can never run code)."""
from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
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


def check_writable_folder(path, flag="--out"):
    """ValueError naming `flag` if `path` cannot be (or become) a folder tinybin can write into:
    it or a parent is a file, or the nearest existing folder refuses a new entry (permissions, a
    read-only file system). Checked by making and removing a temporary folder, so nothing is left
    behind and a run finds out before any work rather than when it first saves."""
    path = Path(path)
    existing = path
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f"cannot be created: {existing} "
        raise ValueError(f"{flag} {path} {where}is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".tinybin-write-test-"))
    except OSError as e:
        where = "" if existing == path else f" (in {existing})"
        raise ValueError(f"{flag} {path} cannot be written{where}: {e.strerror or e}") from None


def save_npz(path, arrays: dict):
    """np.savez to `path` atomically."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def write_text(path, text: str):
    """`path`.write_text(text), atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def read_npz(path, what="a NumPy .npz file") -> dict:
    """{name: array} of an .npz file, never unpickling anything (allow_pickle=False).

    Raises ValueError naming the file and saying it is not `what` when it is truncated,
    corrupt, not an .npz, or holds Python objects (which tinybin never loads).
    """
    try:
        with contextlib.ExitStack() as stack:
            f = np.load(path, allow_pickle=False)
            if not isinstance(f, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            stack.enter_context(f)
            return {k: f[k] for k in f.files}
    except zipfile.BadZipFile:
        reason = "truncated or corrupt"
    except (ValueError, OSError, EOFError) as e:
        reason = "it holds Python objects, which tinybin never loads" if "pickle" in str(e) else "not an .npz archive"
    raise ValueError(f"{path} is not {what} ({reason})")
