"""User errors: the library raises ordinary exceptions; the command line shows them as one line."""
from __future__ import annotations

import contextlib

from ..data import ArchiveError, DownloadError

# what a user's flags or files can cause (ModelFileError is a ValueError)
USER_ERRORS = (ValueError, FileNotFoundError, ImportError, ArchiveError, DownloadError)


class UsageError(Exception):
    """A mistake in the command line or the data it names: reported in one line, exit status 2."""


@contextlib.contextmanager
def reported():
    """Inside this block, a user error becomes a UsageError carrying its message."""
    try:
        yield
    except USER_ERRORS as e:
        raise UsageError(str(e)) from None
