"""tinybin/memory.py: freed arrays stay in the process (no page faults the next time), unless
TINYBIN_KEEP_MEMORY=0; only where the C library is glibc."""
import os
import platform
import subprocess
import sys

import pytest

# Five 8 MB arrays made and freed ten times, as a training step's outputs and gradients are
# made and freed every step: the minor page faults of the last nine rounds.
SCRIPT = """
import resource, numpy as np, tinybin, tinybin.memory as m
def round_():
    arrays = [np.ones(2 << 20, np.float32) for _ in range(5)]
    del arrays
round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(9):
    round_()
print(m.KEEP_MEMORY, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
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
    assert kept and count < 200       # measured: 0
    kept, count = faults("0")
    assert not kept and count > 5000  # glibc's defaults: freed pages go back and fault in again (measured: 18,776)


def test_nothing_changes_where_it_is_turned_off(monkeypatch):
    from tinybin import memory
    monkeypatch.setattr(memory, "KEEP_MEMORY", False)
    assert memory.keep_freed_memory() is False
