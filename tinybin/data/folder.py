"""Image folders: ``root/<class>/*.png|jpg|jpeg`` -> uint8 NHWC arrays, with a decode cache.

Classes are the sub-folders of ``root`` in sorted order (label 0 is the first name); files
within a class are read in sorted order, so ``0000.jpg, 0001.jpg, ...`` keep their numbering.

Decoding is the slow part: about 100 us per 32x32 JPEG with Pillow, almost all of it Python
overhead in ``Image.open`` that holds the GIL, so threads do not help (measured: 2 threads
were slower than 1). 60,000 CIFAR-sized JPEGs take about 6 s in one process, about 3.5 s with
``workers=2`` processes. The decoded arrays are then cached in one ``.npz`` beside the folder
and reloaded in a fraction of a second while the files are unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from .download import cache_dir

__all__ = ["IMAGE_EXTENSIONS", "load_image_folder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CACHE_NAME = ".tinybin_cache"
CHUNK = 2000  # files per decoding task: large enough to amortise a process round trip


def _normalise_size(size):
    if size is None:
        return None
    if isinstance(size, int):
        return (size, size)
    height, width = (int(s) for s in size)
    return (height, width)


def _scan(root: Path):
    """Sorted class names and, per file, (path, label, mtime_ns, bytes). A class folder without
    images is left out, with a warning naming it (its label would otherwise never be seen)."""
    classes = sorted(e.name for e in _entries(root) if not e.name.startswith(".") and _is(e, "dir"))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (expected root/<class>/*.png|jpg)")
    files, kept, empty = [], [], []
    for name in classes:
        entries = sorted((e for e in _entries(root / name) if e.name.lower().endswith(IMAGE_EXTENSIONS)
                          and _is(e, "file")), key=lambda e: e.name)
        if not entries:
            empty.append(name)
            continue
        for e in entries:
            st = _stat(e)
            files.append((e.path, len(kept), st.st_mtime_ns, st.st_size))
        kept.append(name)
    if not files:
        raise ValueError(f"{root}: the class folders hold no .png/.jpg/.jpeg files")
    if empty:
        warnings.warn(f"{root}: class folder{'s' if len(empty) > 1 else ''} {', '.join(empty)} hold"
                      f"{'' if len(empty) > 1 else 's'} no .png/.jpg/.jpeg files: left out, {len(kept)} classes "
                      f"remain", stacklevel=3)
    return kept, files


def _entries(folder):
    try:
        return list(os.scandir(folder))
    except OSError as e:
        raise _unreadable(folder, e) from None


def _is(entry, kind):
    """entry.is_dir() / is_file(), following links; a link loop or an unreadable link is named."""
    try:
        return entry.is_dir() if kind == "dir" else entry.is_file()
    except OSError as e:
        raise _unreadable(entry.path, e) from None


def _stat(entry):
    try:
        return entry.stat()
    except OSError as e:
        raise _unreadable(entry.path, e) from None


def _unreadable(path, error):
    if error.errno == errno.ELOOP:
        return ValueError(f"{path} is a symbolic link that leads back to itself (a loop): remove it or point it "
                          f"at an image or a class folder")
    return ValueError(f"{path} cannot be read: {error.strerror or error}")


def _cache_key(root, classes, files, size) -> str:
    """A digest of everything the decoded arrays depend on: names, mtimes, sizes, ``size``."""
    digest = hashlib.sha1()
    digest.update(repr((classes, size)).encode())
    for path, label, mtime, nbytes in files:
        digest.update(f"{os.path.relpath(path, root)}\0{label}\0{mtime}\0{nbytes}\n".encode())
    return digest.hexdigest()


def _cache_paths(root: Path, size):
    """Where the cache may live: beside the folder, else in the tinybin cache folder."""
    suffix = "" if size is None else f"-{size[0]}x{size[1]}"
    beside = root / f"{CACHE_NAME}{suffix}.npz"
    tag = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    fallback = cache_dir() / "image-folders" / f"{tag}{suffix}.npz"
    return [beside, fallback]


def _read_cache(paths, key):
    for path in paths:
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) == key:
                    return f["x"], f["y"], [str(c) for c in f["classes"]]
        except (OSError, KeyError, ValueError):
            continue  # absent, unreadable or stale: try the next place, then decode
    return None


def _write_cache(paths, key, x, y, classes):
    """Write atomically (temporary file + ``os.replace``) to the first writable place."""
    for path in paths:
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, key=np.array(key), x=x, y=y, classes=np.array(classes))
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the images are not secret
            os.replace(tmp, path)
            return path
        except OSError:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    warnings.warn(f"Could not write an image-folder cache to any of {[str(p) for p in paths]}")
    return None


def _decode(path, size):
    """One image as uint8 (H, W, 3) RGB; resized to ``size = (H, W)`` if given."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(im)


def _try_decode(path, size):
    """``_decode``, or a str saying why not: the file is empty, truncated or not an image, or it
    is too large to decode safely (Pillow's decompression-bomb limit, made an error here)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return _decode(path, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"is too large to decode safely ({_pixels(path)}; the limit is {Image.MAX_IMAGE_PIXELS:,} pixels)"
    except (OSError, SyntaxError, ValueError):  # UnidentifiedImageError is an OSError
        return "cannot be decoded as an image (empty, truncated or not a PNG/JPEG)"


def _pixels(path):
    """"W×H pixels" from the header alone (nothing is decoded), for the too-large message."""
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            return f"{im.size[0]}×{im.size[1]} pixels"
    except Exception:  # the header could not be read again: the count is not essential
        return "too many pixels"
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _decode_chunk(paths, size, shape):
    """Decode ``paths`` into one (n, H, W, 3) array and (index, reason) of the undecodable files;
    a file of another shape is reported as ``(index, shape)`` instead, so the caller can name it."""
    out = np.empty((len(paths),) + shape, dtype=np.uint8)
    bad = []
    for i, path in enumerate(paths):
        image = _try_decode(path, size)
        if isinstance(image, str):
            bad.append((i, image))
        elif image.shape != shape:
            return i, image.shape
        else:
            out[i] = image
    return out, bad


def _undecodable(root, bad, total):
    """bad: (path, reason) of every file that could not be decoded; the first one is named."""
    path, reason = bad[0]
    return ValueError(f"{path} {reason}; {len(bad)} of the {total} image files under {root} cannot be used: "
                      "delete or replace them")


def _mismatch(path, got, first, shape):
    return ValueError(
        f"{path} is {got[0]}x{got[1]} (HxW) but {first} is {shape[0]}x{shape[1]}: images in a folder must all be "
        f"one size; resize that file (or all of them) to one size, or remove it (in Python, "
        f"load_image_folder(root, size=(H, W)) resizes every image as it loads)"
    )


def load_image_folder(path, size=None, cache=True, workers=1):
    """Load ``root/<class>/*.png|jpg|jpeg`` as ``(x, y, class_names)``.

    x: uint8 (N, H, W, 3) RGB; y: int64 labels indexing ``class_names`` (sorted folder names).
    All images must have the size of the first one, else ValueError names the file that
    differs; ``size=(H, W)`` (or an int for square) resizes every image bilinearly instead.

    ``cache=True`` stores the decoded arrays in ``root/.tinybin_cache.npz`` (or, if ``root``
    is read-only, under the tinybin cache folder), keyed on the file names, their modification
    times and byte sizes, and ``size``; any change to the folder decodes it again. The cache is
    written to a temporary name and renamed, so an interrupted run never leaves half a file.

    ``workers > 1`` decodes in that many processes (about 1.8x faster with 2). On platforms
    that start processes by "spawn" (Windows, macOS) the calling script then needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"Image folder {root} does not exist (expected root/<class>/*.jpg)")
    size = _normalise_size(size)
    classes, files = _scan(root)
    key = _cache_key(root, classes, files, size)
    paths = _cache_paths(root, size)
    if cache and (hit := _read_cache(paths, key)) is not None:
        return hit

    names = [f[0] for f in files]
    y = np.array([f[1] for f in files], dtype=np.int64)
    reasons = []  # of the files before the first one that decodes
    for first, name in enumerate(names):
        image = _try_decode(name, size)
        if not isinstance(image, str):
            break
        reasons.append((name, image))
    else:
        raise _undecodable(root, reasons, len(names))
    shape = image.shape  # H, W, 3 of the first readable image sets the size
    chunk = CHUNK
    pieces = [names[i:i + chunk] for i in range(0, len(names), chunk)]
    if workers > 1 and len(pieces) > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(_decode_chunk, pieces, [size] * len(pieces),
                                    [shape] * len(pieces)))
    else:
        results = (_decode_chunk(p, size, shape) for p in pieces)
    x = np.empty((len(names),) + shape, dtype=np.uint8)  # N, H, W, 3
    bad = []
    for k, result in enumerate(results):
        if isinstance(result[0], int):
            index, got = result
            raise _mismatch(pieces[k][index], got, names[first], shape)
        out, bad_here = result
        x[k * chunk:k * chunk + len(out)] = out
        bad += [(pieces[k][i], reason) for i, reason in bad_here]
    if bad:
        raise _undecodable(root, bad, len(names))

    if cache:
        _write_cache(paths, key, x, y, classes)
    return x, y, classes
