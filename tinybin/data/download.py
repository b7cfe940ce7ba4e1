"""Downloads into tinybin's cache folder: atomic, checksummed, with a progress bar.

The cache folder is ``data_dir``, else ``$TINYBIN_DATA``, else ``./datasets``. A file arrives
under a hidden temporary name and is renamed only once it is complete and its checksum matches,
so the cache never holds half a file.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path


class DownloadError(OSError):
    """The file is not in the cache and could not be downloaded."""


class ArchiveError(RuntimeError):
    """A file is truncated, corrupt, fails its checksum or lacks members."""


def cache_dir(data_dir=None) -> Path:
    """The cache folder: ``data_dir``, else ``$TINYBIN_DATA``, else ``./datasets``."""
    if data_dir is not None:
        return Path(data_dir)
    env = os.environ.get("TINYBIN_DATA")
    return Path(env) if env else Path("datasets")


def file_digest(path, algorithm="sha256", chunk=1 << 20) -> str:
    """The hex digest of a file's bytes (``algorithm``: "sha256" or "md5")."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def by_hand(url, folder, name=None) -> str:
    """How to place a file by hand on a machine without internet (the end of an error message)."""
    name = name or url.rsplit("/", 1)[-1]
    return (
        f"To place it by hand, download {url} on any machine with internet and copy it, unchanged "
        f"and not extracted, to {Path(folder).resolve() / name} (or set $TINYBIN_DATA to the "
        "folder that holds it)."
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


def download(url, dest, md5=None, sha256=None, progress=True, chunk=1 << 16) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its MD5 and/or SHA-256.

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
        expected = {name: value for name, value in (("md5", md5), ("sha256", sha256)) if value}
        digests = {name: hashlib.new(name) for name in expected}
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=60)
                with response:
                    total = int(response.headers.get("Content-Length") or 0)
                    bar = _Progress(total, f"Downloading {dest.name}") if progress else None
                    done = 0
                    while block := response.read(chunk):
                        out.write(block)
                        for digest in digests.values():
                            digest.update(block)
                        done += len(block)
                        if bar:
                            bar.update(done)
                    if bar:
                        bar.close()
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise DownloadError(
                    f"Could not download {url} into the cache folder {dest.parent.resolve()}: "
                    f"{exc}. {by_hand(url, dest.parent, dest.name)}"
                ) from exc
            if total and done != total:
                raise DownloadError(
                    f"Download of {url} stopped after {done} of {total} bytes. "
                    + by_hand(url, dest.parent, dest.name)
                )
        for name, value in expected.items():
            got = digests[name].hexdigest()
            if got != value:
                raise ArchiveError(
                    f"Downloaded {url} but its {name.upper()} is {got}, not the published {value}; "
                    "the file was deleted. Try again later. " + by_hand(url, dest.parent, dest.name)
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


