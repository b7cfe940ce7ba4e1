"""kernels/warm.py: the process that compiles a new machine's kernels from the other end while
the first training step compiles them from the start. (That a step compiles exactly
warm.SIGNATURES is tests/test_workers.py's.)"""
import os
import subprocess
import sys

import pytest

from tinybin import kernels
from tinybin.kernels import warm


@pytest.fixture
def started(monkeypatch):
    """helper()'s conditions all met (an empty cache, an idle machine, two threads); the
    processes it would start are recorded instead."""
    calls = []
    monkeypatch.setattr(warm.subprocess, "Popen", lambda args, **kw: calls.append(args) or "process")
    monkeypatch.setattr(warm, "cached", lambda name: False)
    monkeypatch.setattr(warm.os, "getloadavg", lambda: (0.2, 0.2, 0.2))
    monkeypatch.setattr(warm.numba.config, "NUMBA_NUM_THREADS", 2)
    monkeypatch.setattr(warm.numba.config, "DISABLE_JIT", False)
    return calls


def test_the_helper_starts_on_a_new_idle_machine(started):
    with kernels.settings(reference=False, parallel=True):
        assert warm.helper() == "process"
    assert started == [[sys.executable, "-m", "tinybin.kernels.warm"]]


@pytest.mark.parametrize("why", ["cached", "busy", "one thread", "serial", "reference", "no load average"])
def test_the_helper_stays_away_when_it_cannot_help(started, monkeypatch, why):
    settings = dict(reference=why == "reference", parallel=why != "serial")
    if why == "cached":
        monkeypatch.setattr(warm, "cached", lambda name: name == warm.LAST)
    if why == "busy":    # 2 threads: a load of 1.5 leaves no core idle half the time
        monkeypatch.setattr(warm.os, "getloadavg", lambda: (1.5, 0.2, 0.2))
    if why == "no load average":
        def unknown():
            raise OSError("no load average")
        monkeypatch.setattr(warm.os, "getloadavg", unknown)
    if why == "one thread":
        monkeypatch.setattr(warm.numba.config, "NUMBA_NUM_THREADS", 1)
    with kernels.settings(**settings):
        assert warm.helper() is None
    assert started == []


def test_the_helper_fills_an_empty_cache_with_what_the_step_loads(tmp_path):
    """`python -m tinybin.kernels.warm NAME` into an empty cache: a later process finds the step's
    last kernel there (so no helper would start again) and loads, not compiles, its signature."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    probe = ("from tinybin.kernels import warm\nname = warm.LAST\ncached = warm.cached(name)\n"
             "warm.compile_kernels([name])\nstats = warm.kernel(name).stats\n"
             "print(cached, sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))")
    empty = subprocess.run([sys.executable, "-c", "from tinybin.kernels import warm\nprint(warm.cached(warm.LAST))"],
                           env=env, capture_output=True, text=True, check=True, timeout=600).stdout.split()
    assert empty == ["False"]
    subprocess.run([sys.executable, "-m", "tinybin.kernels.warm", warm.LAST], env=env, check=True, timeout=600)
    after = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                           timeout=600).stdout.split()
    assert after == ["True", "1", "0"]
