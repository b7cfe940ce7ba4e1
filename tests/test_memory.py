"""tinybin/memory.py: freed arrays stay in the process (no page faults the next time), unless
TINYBIN_KEEP_MEMORY=0; only where the C library is glibc."""
import os
import platform
import subprocess
import sys

import pytest

# Five 8 MB arrays made and freed ten times, as a training step's outputs and gradients are
# made and freed every step: the minor page faults of the last nine rounds. NumPy's huge-page
# request is turned off, so that a fault is one 4 kB page whatever the kernel's settings.
SCRIPT = """
import resource, numpy as np, tinybin, tinybin.memory as m
np._core.multiarray._set_madvise_hugepage(False)
def round_():
    arrays = [np.ones(2 << 20, np.float32) for _ in range(5)]
    del arrays
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    round_()
print(m.KEPT, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(keep: str):
    env = {**os.environ, "TINYBIN_KEEP_MEMORY": keep}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    kept, count = out.stdout.split()
    return kept == "True", int(count)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_freed_arrays_are_reused_without_page_faults():
    kept, count = faults("1")
    assert kept and count < 200        # measured: 0
    for off in ("0", "false"):
        kept, count = faults(off)
        assert not kept and count > 5000   # glibc's defaults: freed pages go back and fault in again
