"""CIFAR-10 and CIFAR-100 from the official "python version" archives.

The archives are read straight from the ``.tar.gz``: nothing is extracted, so the cache
folder only ever holds the archive itself (about 163 MB for CIFAR-10, 161 MB for CIFAR-100).

Layout of the official archives (Krizhevsky, 2009)::

    cifar-10-batches-py/  data_batch_1 ... data_batch_5, test_batch, batches.meta
    cifar-100-python/     train, test, meta

Each member is a pickle written by Python 2: a dict with *byte-string* keys
(``b"data"``, ``b"labels"``, ...), so it is read with ``pickle.load(f, encoding="bytes")``.
``b"data"`` is uint8 (N, 3072), channel-planar: 1024 red, then 1024 green, then 1024 blue
values, each plane row-major 32x32. ``reshape(N, 3, 32, 32).transpose(0, 2, 3, 1)`` turns it
into tinybin's NHWC layout.

Where the archive comes from, in order: ``archive=`` (any file in the official layout, e.g. a
subset holding fewer batches); else ``<cache>/cifar-10-python.tar.gz`` (or the CIFAR-100
name), downloaded on first use. The cache folder is ``data_dir``, else ``$TINYBIN_DATA``,
else ``./datasets``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "ArchiveError",
    "DownloadError",
    "UnofficialArchiveWarning",
    "cache_dir",
    "cifar_class_names",
    "download",
    "load_cifar10",
    "load_cifar100",
]


# Published by the dataset's authors on https://www.cs.toronto.edu/~kriz/cifar.html
DATASETS = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "filename": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "filename": "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": "cifar-100-python",
    },
}


class DownloadError(OSError):
    """The archive is not in the cache and could not be downloaded."""


class ArchiveError(RuntimeError):
    """An archive is truncated, corrupt, fails its checksum or lacks members."""


class UnofficialArchiveWarning(UserWarning):
    """An archive loads but its MD5 is not the published one (a subset, or modified)."""


# --------------------------------------------------------------------------- cache and download


def cache_dir(data_dir=None) -> Path:
    """The cache folder: ``data_dir``, else ``$TINYBIN_DATA``, else ``./datasets``."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("TINYBIN_DATA")
    return Path(env) if env else Path("datasets")


def _md5(path, chunk=1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(url, folder) -> str:
    return (
        f"To place it by hand, download {url} on any machine with internet and copy the file, "
        f"unchanged and not extracted, into {Path(folder).resolve()} (or pass archive=PATH, or set "
        "$TINYBIN_DATA to the folder that holds it)."
    )


class _Progress:
    """A one-line text progress bar on stderr: ``[#####.....]  52%  85.1/163.0 MB``."""

    def __init__(self, total, label, stream=None, width=30):
        self.total, self.label, self.width = total, label, width
        self.stream = stream if stream is not None else sys.stderr
        self.shown = -1

    def update(self, done):
        mb = done / 1e6
        if self.total:
            percent = min(100, int(100 * done / self.total))
            if percent == self.shown:
                return  # redraw only when the figure changes: a slow terminal stays cheap
            self.shown = percent
            filled = self.width * percent // 100
            bar = "#" * filled + "." * (self.width - filled)
            text = f"\r{self.label} [{bar}] {percent:3d}%  {mb:6.1f}/{self.total / 1e6:.1f} MB"
        else:
            shown = int(mb)
            if shown == self.shown:
                return
            self.shown = shown
            text = f"\r{self.label} {mb:6.1f} MB"
        self.stream.write(text)
        self.stream.flush()

    def close(self):
        self.stream.write("\n")
        self.stream.flush()


def download(url, dest, md5=None, progress=True, chunk=1 << 16) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its MD5.

    The bytes go to a temporary file in ``dest``'s folder; only when the download is complete
    and the checksum matches is it renamed to ``dest`` (``os.replace``, atomic on one file
    system). Whatever goes wrong -- no network, a dropped connection, a wrong checksum,
    Ctrl-C -- the temporary file is deleted, so the cache never holds half a file.

    ``urllib.request.urlopen`` is looked up at call time, so tests replace it with a fake
    serving local bytes (``monkeypatch.setattr(urllib.request, "urlopen", fake)``).

    Raises DownloadError (network) or ArchiveError (checksum); returns ``dest``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    ok = False
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=60)
                with response:
                    total = int(response.headers.get("Content-Length") or 0)
                    bar = _Progress(total, f"Downloading {dest.name}") if progress else None
                    done = 0
                    while block := response.read(chunk):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if bar:
                            bar.update(done)
                    if bar:
                        bar.close()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DownloadError(
                    f"Could not download {url} into the cache folder {dest.parent.resolve()}: "
                    f"{exc}. {_by_hand(url, dest.parent)}"
                ) from exc
            if total and done != total:
                raise DownloadError(
                    f"Download of {url} stopped after {done} of {total} bytes. "
                    + _by_hand(url, dest.parent)
                )
        if md5 is not None and digest.hexdigest() != md5:
            raise ArchiveError(
                f"Downloaded {url} but its MD5 is {digest.hexdigest()}, not the published {md5}; "
                "the file was deleted. Try again later. " + _by_hand(url, dest.parent)
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a shared cache should stay readable
        os.replace(tmp, dest)
        ok = True
    finally:
        if not ok:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    return dest


def _resolve_archive(name, data_dir, archive, download_ok) -> Path:
    """Find (or download) the archive for dataset ``name``; warn if it is not the official one."""
    info = DATASETS[name]
    if archive is not None:
        path = Path(archive)
        if not path.is_file():
            raise FileNotFoundError(f"No archive at {path}")
        _check_official(path, info)
        return path
    folder = cache_dir(data_dir)
    path = folder / info["filename"]
    if path.is_file():
        # Downloaded files were checked before their rename; this catches a copy placed by hand.
        _check_official(path, info)
        return path
    if not download_ok:
        raise DownloadError(
            f"{info['filename']} is not in the cache folder {folder.resolve()} and download=False. "
            + _by_hand(info["url"], folder)
        )
    return download(info["url"], path, md5=info["md5"])


def _check_official(path, info):
    digest = _md5(path)
    if digest != info["md5"]:
        warnings.warn(
            f"{path}: MD5 {digest} is not the published {info['md5']} of {info['filename']}; "
            "loading it anyway (expected for a subset in the official layout).",
            UnofficialArchiveWarning,
            stacklevel=4,
        )


# --------------------------------------------------------------------------- reading archives


def _read_members(path, folder, wanted) -> dict:
    """Unpickle the members of ``path`` whose name (inside ``folder/``) satisfies ``wanted``.

    One sequential pass over the gzip stream (``r|gz``): seeking back in a compressed tar
    would mean decompressing it again from the start.
    """
    found = {}
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                top, _, base = name.partition("/")
                if top != folder or not member.isfile() or not wanted(base):
                    continue
                found[base] = pickle.load(tar.extractfile(member), encoding="bytes")
    except (tarfile.TarError, EOFError, zlib.error, OSError, pickle.UnpicklingError,
            ValueError) as exc:
        raise ArchiveError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}). Delete it and "
            "download it again."
        ) from exc
    return found


def _require(found, names, path, folder):
    missing = [f"{folder}/{n}" for n in names if n not in found]
    if missing:
        raise ArchiveError(
            f"{path} is not in the official layout: missing {', '.join(missing)}"
        )


def _images(batch, path, member) -> np.ndarray:
    try:
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # N,32,32,3
    except (KeyError, ValueError) as exc:
        raise ArchiveError(f"{path}: member {member} has no uint8 (N, 3072) b'data'") from exc


def _labels(batch, key, path, member) -> np.ndarray:
    if key not in batch:
        raise ArchiveError(f"{path}: member {member} has no {key!r}")
    return np.asarray(batch[key], dtype=np.int64)


def _decode_names(names) -> list:
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _cifar10_batches(base):
    number = base.removeprefix("data_batch_")
    return base in ("test_batch", "batches.meta") or (number != base and number.isdigit())


def load_cifar10(data_dir=None, archive=None, download=True):
    """CIFAR-10: ``(x_train, y_train), (x_test, y_test)``.

    Images are uint8 (N, 32, 32, 3) RGB (NHWC), labels int64 in 0..9. The official archive
    gives 50,000 + 10,000 images; an ``archive=`` in the same layout may hold fewer training
    batches (``data_batch_1`` only, say) and fewer images per batch. Training batches are
    concatenated in numerical order, so images keep the official order.

    ``download=False`` never touches the network (a missing archive is an error).
    """
    info = DATASETS["cifar10"]
    path = _resolve_archive("cifar10", data_dir, archive, download)
    found = _read_members(path, info["folder"], _cifar10_batches)
    _require(found, ["test_batch", "batches.meta"], path, info["folder"])
    train = [n for n in found if n.startswith("data_batch_")]
    train.sort(key=lambda n: int(n.removeprefix("data_batch_")))
    if not train:
        raise ArchiveError(
            f"{path} is not in the official layout: missing {info['folder']}/data_batch_1 "
            "(no training batch at all)"
        )
    x_train = np.concatenate([_images(found[n], path, n) for n in train])
    y_train = np.concatenate([_labels(found[n], b"labels", path, n) for n in train])
    x_test = _images(found["test_batch"], path, "test_batch")
    y_test = _labels(found["test_batch"], b"labels", path, "test_batch")
    return (x_train, y_train), (x_test, y_test)


def load_cifar100(data_dir=None, archive=None, download=True, label_mode="fine"):
    """CIFAR-100: ``(x_train, y_train), (x_test, y_test)``.

    ``label_mode="fine"`` gives the 100 class labels, ``"coarse"`` the 20 superclass labels.
    Images are uint8 (N, 32, 32, 3) RGB, labels int64 (official: 50,000 + 10,000 images).
    """
    key = _label_key(label_mode)
    info = DATASETS["cifar100"]
    path = _resolve_archive("cifar100", data_dir, archive, download)
    found = _read_members(path, info["folder"], lambda b: b in ("train", "test", "meta"))
    _require(found, ["train", "test", "meta"], path, info["folder"])
    x_train = _images(found["train"], path, "train")
    y_train = _labels(found["train"], key, path, "train")
    x_test = _images(found["test"], path, "test")
    y_test = _labels(found["test"], key, path, "test")
    return (x_train, y_train), (x_test, y_test)


def _label_key(label_mode) -> bytes:
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', not {label_mode!r}")
    return b"fine_labels" if label_mode == "fine" else b"coarse_labels"


def cifar_class_names(dataset="cifar10", data_dir=None, archive=None, download=True,
                      label_mode="fine") -> list:
    """Class names from the archive's meta member, in label order.

    ``dataset`` is ``"cifar10"`` (``batches.meta``, ``b"label_names"``) or ``"cifar100"``
    (``meta``, ``b"fine_label_names"`` or ``b"coarse_label_names"`` by ``label_mode``).
    Only the meta member is unpickled, but the gzip stream is still read through once.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, not {dataset!r}")
    info = DATASETS[dataset]
    meta, key = ("batches.meta", b"label_names") if dataset == "cifar10" else (
        "meta", b"fine_label_names" if _label_key(label_mode) == b"fine_labels"
        else b"coarse_label_names")
    path = _resolve_archive(dataset, data_dir, archive, download)
    found = _read_members(path, info["folder"], lambda b: b == meta)
    _require(found, [meta], path, info["folder"])
    if key not in found[meta]:
        raise ArchiveError(f"{path}: member {meta} has no {key!r}")
    return _decode_names(found[meta][key])
