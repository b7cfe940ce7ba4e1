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
else ``./datasets``. ``load_cifar10_subset()`` reads the 4000/1000-image subset shipped in
``datasets/`` (no network).

A pickle can name any Python callable to run while it loads, so a crafted archive could run
code. The members are therefore read by an unpickler that admits only what the official files
hold -- dicts, lists, bytes, str, int, float and NumPy's array reconstruction -- and refuses any
other global with an error naming the member, before anything is called.
"""

from __future__ import annotations

import pickle
import tarfile
import warnings
import zlib
from pathlib import Path

import numpy as np

from .download import ArchiveError, DownloadError, by_hand, cache_dir, download, file_digest
from .files import known_file, known_name

__all__ = [
    "UnofficialArchiveWarning",
    "UnsafeArchiveError",
    "cifar_class_names",
    "load_cifar10",
    "load_cifar10_subset",
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


class UnofficialArchiveWarning(UserWarning):
    """An archive loads but is neither the published one nor a file tinybin knows."""


class UnsafeArchiveError(ArchiveError):
    """A member of an archive asks the unpickler to call something no CIFAR file needs."""


# --------------------------------------------------------------------------- finding archives


def _resolve_archive(name, data_dir, archive, download_ok):
    """(path, warning or None) for dataset ``name``: ``archive``, else the cache (downloaded on
    first use). The warning, for an archive that is neither published nor known, is given by the
    loader only once the archive has been read: a corrupt file gets its error, not a warning."""
    info = DATASETS[name]
    if archive is not None:
        path = Path(archive)
        if not path.is_file():
            raise FileNotFoundError(f"No archive at {path} (--archive)")
        return path, _unofficial(path, info)
    folder = cache_dir(data_dir)
    path = folder / info["filename"]
    if path.is_file():
        # Downloaded files were checked before their rename; this catches a copy placed by hand.
        return path, _unofficial(path, info)
    if not download_ok:
        raise DownloadError(
            f"{info['filename']} is not in the cache folder {folder.resolve()} and download=False. "
            + by_hand(info["url"], folder) + " Or name any archive in the official layout with "
            "--archive PATH (archive=PATH in Python)."
        )
    return download(info["url"], path, md5=info["md5"]), None


def _unofficial(path, info):
    """None for the published archive or a file tinybin knows by SHA-256; else the warning text."""
    digest = file_digest(path, "md5")
    if digest == info["md5"] or known_name(path) is not None:
        return None
    return (f"{path}: MD5 {digest} is not the published {info['md5']} of {info['filename']}; "
            "loaded anyway (a subset or a modified copy in the official layout).")


def _warn(message):
    if message is not None:
        warnings.warn(message, UnofficialArchiveWarning, stacklevel=3)


# --------------------------------------------------------------------------- reading archives


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals the official CIFAR pickles use (NumPy arrays; bytes in protocol 2)."""

    ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),  # how a protocol-2 pickle written by Python 3 stores bytes
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise UnsafeArchiveError(f"{module}.{name}")
        return super().find_class(module, name)


def _unpickle(fileobj):
    return _CifarUnpickler(fileobj, encoding="bytes").load()


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
                try:
                    found[base] = _unpickle(tar.extractfile(member))
                except UnsafeArchiveError as exc:
                    raise UnsafeArchiveError(
                        f"{path}: member {name} asks to call {exc}, which no CIFAR file does; "
                        "refused, nothing was run. The archive was crafted or modified: do not "
                        "use it.") from None
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
    path, unofficial = _resolve_archive("cifar10", data_dir, archive, download)
    result = _read_cifar10(path)
    _warn(unofficial)
    return result


def load_cifar10_subset(data_dir=None):
    """The CIFAR-10 subset shipped in ``datasets/``: the first 4000 images of ``data_batch_1``
    and the first 1000 of ``test_batch``, bit-exact, in the official order (no network).

    Same return value as ``load_cifar10``; the file's SHA-256 is checked on every load.
    """
    return _read_cifar10(known_file("cifar10-subset", data_dir, download_ok=False))


def _read_cifar10(path):
    info = DATASETS["cifar10"]
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
    path, unofficial = _resolve_archive("cifar100", data_dir, archive, download)
    found = _read_members(path, info["folder"], lambda b: b in ("train", "test", "meta"))
    _require(found, ["train", "test", "meta"], path, info["folder"])
    x_train = _images(found["train"], path, "train")
    y_train = _labels(found["train"], key, path, "train")
    x_test = _images(found["test"], path, "test")
    y_test = _labels(found["test"], key, path, "test")
    _warn(unofficial)
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
    path, unofficial = _resolve_archive(dataset, data_dir, archive, download)
    found = _read_members(path, info["folder"], lambda b: b == meta)
    _require(found, [meta], path, info["folder"])
    if key not in found[meta]:
        raise ArchiveError(f"{path}: member {meta} has no {key!r}")
    _warn(unofficial)
    return _decode_names(found[meta][key])
