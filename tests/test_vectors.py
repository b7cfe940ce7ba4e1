"""The vector width the Numba kernels are compiled for (kernels/config.py, "Vector width")."""
import os
import subprocess
import sys

import llvmlite.binding as llvm
import pytest

from tinybin.kernels import config, registers

AVX512 = bool(llvm.get_host_cpu_features().get("avx512f"))
FEATURES = """
import numba.core.config as c
import tinybin.kernels
print(c.CPU_FEATURES)
"""


def run(code, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CPU", "TINYBIN_WIDE"))}
    out = subprocess.run([sys.executable, "-c", code], env={**environ, **env}, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_wide_vectors_on_avx512_only_and_never_over_a_users_choice():
    assert run(FEATURES)[-1].endswith(",-prefer-256-bit") if AVX512 else run(FEATURES) == ["None"]
    assert run(FEATURES, TINYBIN_WIDE_VECTORS="0") == ["None"]
    assert run(FEATURES, NUMBA_CPU_FEATURES="+avx2") == ["+avx2"]
    assert run(FEATURES, NUMBA_CPU_NAME="generic") in ([], ["None"])
    assert registers.ROWS == (16 if config.wide_vectors() else 8)


def test_numba_compiling_first_fixes_the_width_and_the_block_follows_it():
    code = """
import numba
numba.njit(lambda x: x + 1)(1)                # another library compiled first
import numba.core.config as c
from tinybin.kernels import registers
print(c.CPU_FEATURES, registers.ROWS)
"""
    assert run(code) == ["None", "8"]


def test_a_bad_value_is_named_when_the_settings_are_read():
    with pytest.raises(ValueError, match="TINYBIN_WIDE_VECTORS='maybe'"):
        config.from_environment({"TINYBIN_WIDE_VECTORS": "maybe"})
    assert run(FEATURES, TINYBIN_WIDE_VECTORS="maybe")   # the import itself goes on


def step_hashes():
    """SHA-1 of the parameters after two training steps of WRN-8-2 (direct, Winograd and im2col
    layers), baseline2 and srelu, on one thread."""
    import hashlib

    import numpy as np

    from tinybin import kernels
    from tinybin.models import wrn
    from tinybin.optim import SGD
    from tinybin.train import train_step

    hashes = []
    with kernels.settings(parallel=False):
        for variant in ("baseline2", "srelu"):
            rng = np.random.default_rng(0)
            model = wrn(8, 2, variant=variant, bits=1, rng=rng, temperature=40.0 if variant == "srelu" else None)
            opt = SGD(model.parameters(), lr=0.1)
            x = rng.integers(0, 256, (6, 8, 8, 3)).astype(np.float32)
            for _ in range(2):
                train_step(model, opt, x, rng.integers(0, 10, 6), 0.1)
            hashes.append(hashlib.sha1(b"".join(p.data.tobytes() for p in model.parameters())).hexdigest())
    return hashes


@pytest.mark.skipif(not AVX512, reason="512-bit vectors need AVX-512")
def test_the_vector_width_changes_no_bit_of_a_training_step():
    if not config.wide_vectors():
        pytest.skip("this process runs 256-bit vectors (TINYBIN_WIDE_VECTORS=0)")
    # this process at 512 bits, the child at 256
    narrow = run(f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r}); from test_vectors import "
                 f"step_hashes; print(*step_hashes())", TINYBIN_WIDE_VECTORS="0")
    assert narrow == step_hashes()
