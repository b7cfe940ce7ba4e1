"""Shared test helpers.

Real CIFAR data for tests lives outside the repository, in ``../shared/data`` relative to the
project root (see that folder's README). Tests that need it take the ``shared_data`` fixture,
which skips them, with the reason, where the folder is absent.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data():
    """The shared data folder (``../shared/data``); skips the test if it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared test data folder {SHARED} is absent (see shared/data/README.md)")
    return SHARED


# A small central-difference check used by the kernel tests (float64, random upstream gradient),
# independent of tinybin.gradcheck so that the kernels are not checked by code built on them.
def numerical_grad(f, a, dout, eps=1e-6):
    """d/da of sum(f() * dout) by central differences, perturbing a in place, every element."""
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        plus = np.sum(f() * dout)
        a[idx] = old - eps
        minus = np.sum(f() * dout)
        a[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def rel_error(a, b):
    """max |a - b| / max(1e-8, |a| + |b|), element by element (errors ~1e-8 or less are good)."""
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


def bn_inputs(seed, shape=(3, 4, 5, 6), affine=True):
    """(rng, x, weight, bias) for batch-norm tests: x away from zero mean and unit std, and a
    weight and bias near 1 and 0 (None when not affine)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2 + 0.5
    C = shape[-1]
    weight = 1 + 0.3 * rng.standard_normal(C) if affine else None
    bias = 0.3 * rng.standard_normal(C) if affine else None
    return rng, x, weight, bias


def cli(*args, cwd=None):
    """`python -m tinybin ARGS` in a subprocess: its CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "tinybin", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_line(proc, status=2):
    """The single stderr line of a refused command (exit `status`, no traceback)."""
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def snapshot(folder):
    """{file: (bytes, mtime)} of everything in a folder, to show that nothing was touched."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def quiet(*args, **kwargs):
    """A `log` that prints nothing."""


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """A tiny CIFAR-10 archive in the official layout (250 training and 50 test images), per module."""
    from archives import cifar10_archive
    return cifar10_archive(tmp_path_factory.mktemp("data") / "tiny-cifar-10.tar.gz", sizes=(250,), n_test=50)[0]
