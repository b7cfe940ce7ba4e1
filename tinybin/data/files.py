"""The files tinybin ships in ``datasets/`` or fetches on demand, each known by its SHA-256.

A known file is looked for in the data folder (``data_dir``, else ``$TINYBIN_DATA``, else
``./datasets``), then among the files installed with the package (``pip install`` ships
``datasets/`` as ``tinybin/datasets/``, see pyproject.toml), then in the ``datasets/`` folder of a
source checkout, so the shipped files are found from any working directory. Every load checks the SHA-256: a damaged or replaced copy is
an error naming the file, never silently used. A file that is not shipped (the authors' CIFAR-100
model) is downloaded into the data folder on first use, atomically and checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .download import ArchiveError, cache_dir, download, file_digest

# The authors' repository (MIT licence), pinned to the commit that holds the released models.
MCDONNELL_URL = ("https://raw.githubusercontent.com/McDonnell-Lab/1-bit-per-weight/"
                 "2627dcb8091dc8dcbe78af64bd3aeb72521a72f7/TrainedModels/Tensorflow.keras/")
# datasets/ as installed by pip (the package tinybin.datasets), and in a source checkout
INSTALLED_DATASETS = Path(__file__).resolve().parents[1] / "datasets"
CHECKOUT = Path(__file__).resolve().parents[2]
CHECKOUT_DATASETS = CHECKOUT / "datasets"


@dataclass(frozen=True)
class KnownFile:
    path: str            # relative to a data folder
    sha256: str
    what: str
    url: str | None = None  # None: shipped only, never downloaded


KNOWN = {
    "cifar10-subset": KnownFile(
        "cifar-10-subset-python.tar.gz",
        "7613028cab4ac5b304ce63bdda9143861e2c98989fffc348fdfaab667f3ed78c",
        "the first 4000 training and 1000 test images of CIFAR-10, official layout"),
    "mcdonnell-cifar10": KnownFile(
        "mcdonnell/CIFAR10_allparams.mat",
        "c1b73fa8820cfe2cc23e0728f7aebbfb02c49c68608da28c96aa78e554acc1f2",
        "the authors' released 1-bit WRN-20-10 for CIFAR-10", MCDONNELL_URL + "CIFAR10_allparams.mat"),
    "mcdonnell-cifar100": KnownFile(
        "mcdonnell/CIFAR100_allparams.mat",
        "285b1b89fe2c4b87606d31e60faa822681c5bb2394ec5aeef50c3d125050a798",
        "the authors' released 1-bit WRN-20-10 for CIFAR-100", MCDONNELL_URL + "CIFAR100_allparams.mat"),
}


def data_folders(data_dir=None) -> list:
    """Where known files are looked for, in order: the data folder, then the files installed with
    tinybin, then a source checkout's datasets/ (only if this tinybin is one: an installed one's
    site-packages/datasets/ would be another package's)."""
    folders = [cache_dir(data_dir)]
    for shipped in (INSTALLED_DATASETS, CHECKOUT_DATASETS if (CHECKOUT / "pyproject.toml").is_file() else None):
        if shipped is not None and shipped.is_dir() and shipped.resolve() != folders[0].resolve():
            folders.append(shipped)
    return folders


def known_name(path) -> str | None:
    """The name under which ``path`` is known (by its SHA-256), or None."""
    digest = file_digest(path)
    return next((name for name, f in KNOWN.items() if f.sha256 == digest), None)


def known_file(name, data_dir=None, download_ok=True) -> Path:
    """The path of known file ``name``, its SHA-256 checked; downloaded first if it has a URL.

    Raises ArchiveError (wrong bytes), FileNotFoundError (a shipped file is missing) or
    DownloadError (offline: the message says where to copy the file by hand).
    """
    if name not in KNOWN:
        raise ValueError(f"unknown file {name!r}; known: {', '.join(KNOWN)}")
    f = KNOWN[name]
    for folder in data_folders(data_dir):
        path = folder / f.path
        if path.is_file():
            digest = file_digest(path)
            if digest != f.sha256:
                raise ArchiveError(
                    f"{path} is not {f.what}: its SHA-256 is {digest}, not {f.sha256}. "
                    f"Restore it (git checkout {f.path} in a source checkout) or delete it.")
            return path
    if f.url is None or not download_ok:
        where = " or ".join(str((folder / f.path).resolve()) for folder in data_folders(data_dir))
        raise FileNotFoundError(f"{f.what} is not at {where}: point --data-dir (data_dir= in Python) or $TINYBIN_DATA "
                                f"at a folder holding {f.path}, such as the datasets/ folder of a tinybin checkout "
                                f"(`pip install` of a checkout ships it)")
    return download(f.url, cache_dir(data_dir) / f.path, sha256=f.sha256)
