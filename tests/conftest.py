"""Shared test helpers.

Real CIFAR data for tests lives outside the repository, in ``../shared/data`` relative to the
project root (see that folder's README). Tests that need it take the ``shared_data`` fixture,
which skips them, with the reason, where the folder is absent.
"""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The shared data folder (``../shared/data``); skips the test if it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared test data folder {SHARED} is absent (see shared/data/README.md)")
    return SHARED
