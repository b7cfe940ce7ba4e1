"""kernels/workers.py: a kernel's units shared among threads, and what a new machine compiles for
a training step (one signature per kernel used, no parallel=True function: kernels/workers.py
says why)."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from tinybin import kernels
from tinybin.kernels import warm, workers


def recorded(parallel, units):
    parts = []

    def kernel(out, lo, hi):
        parts.append((lo, hi, threading.get_ident()))
        out[lo:hi] += 1

    out = np.zeros(units, int)
    with kernels.settings(parallel=parallel):
        workers.split(kernel, units, out)
    return sorted(parts), out


@pytest.mark.parametrize("units", [1, 2, 7, 100])
def test_split_covers_every_unit_once_in_contiguous_parts(units):
    for parallel in (False, True):
        parts, out = recorded(parallel, units)
        assert np.all(out == 1)                                   # every unit once
        assert [p[:2] for p in parts] == sorted(p[:2] for p in parts)
        assert parts[0][0] == 0 and parts[-1][1] == units
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        expected = min(workers.threads(), units) if parallel else 1
        assert len(parts) == expected
        if parallel and expected > 1:
            assert len({p[2] for p in parts}) == expected        # each part on its own thread


def test_an_error_in_any_part_reaches_the_caller():
    def kernel(lo, hi):
        if hi == 10:                                             # the last part: a pool thread's when parallel
            raise ZeroDivisionError("in the kernel")

    for parallel in (False, True):
        with kernels.settings(parallel=parallel), pytest.raises(ZeroDivisionError, match="in the kernel"):
            workers.split(kernel, 10)


STEP = """
import json, numba, numpy as np
from tinybin.kernels import bn_numba, direct_numba, im2col_numba, pointwise_numba, pool_numba, winograd_numba
from tinybin.models import wrn
from tinybin.optim import SGD
from tinybin.train import train_step
rng = np.random.default_rng(0)
for variant in ("baseline2", "srelu"):
    model = wrn(20, 1, variant=variant, rng=rng, temperature=40.0 if variant == "srelu" else None)
    train_step(model, SGD(model.parameters(), lr=0.1), rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32),
               np.arange(4), 0.1)
found = {}
for module in (bn_numba, direct_numba, im2col_numba, pointwise_numba, pool_numba, winograd_numba):
    for name, f in vars(module).items():
        if isinstance(f, numba.core.registry.CPUDispatcher):
            found[module.__name__.split(".")[-1] + "." + name] = [[str(s) for s in f.signatures],
                                                                   bool(f.targetoptions.get("parallel"))]
print(json.dumps(found))
"""


def test_one_training_step_compiles_one_signature_per_kernel_used():
    """WRN-20-1 baseline2 and srelu, float32, one step each, in a fresh process (from the cache or
    compiled): every kernel they use has exactly one signature, the one kernels/warm.py lists
    (what its helper process compiles ahead is what the step then loads), none is a
    parallel=True function, and nothing of float64 or of the serial setting was compiled besides."""
    proc = subprocess.run([sys.executable, "-c", STEP], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.splitlines()[-1])
    assert not [name for name, (_, parallel) in found.items() if parallel]
    used = {name: signatures for name, (signatures, _) in found.items() if signatures}
    assert used == {name: [str(warm.signature(spec))] for name, spec in warm.SIGNATURES.items()}
