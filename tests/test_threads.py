"""Parallel whatever the import order: a script that imports NumPy before tinybin gets OpenBLAS
threads that sleep when idle (tinybin/threads.py), or one clear warning saying how to get them."""
import os
import subprocess
import sys

import pytest

IDLE_CPU = """
import sys, time
{first}
a = np.ones((400, 400), np.float32)
spins = []
for _ in range(5):
    a @ a                                   # wakes OpenBLAS's threads
    t = time.process_time()
    time.sleep(0.1)
    spins.append(time.process_time() - t)
print(sorted(spins)[2])                     # median CPU seconds used while the main thread slept
"""
ORDERS = {"numpy only": "import numpy as np",
          "numpy first": "import numpy as np\nimport tinybin",
          "tinybin first": "import tinybin\nimport numpy as np"}


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "TINYBIN_PARALLEL")}
    env.update(OPENBLAS_NUM_THREADS="2", **extra)
    return env


def idle_cpu(order):
    proc = subprocess.run([sys.executable, "-c", IDLE_CPU.format(first=ORDERS[order])], env=clean_env(),
                          capture_output=True, text=True, check=True)
    return float(proc.stdout)


def test_idle_blas_threads_sleep_whatever_the_import_order():
    """After a matrix product, OpenBLAS's idle threads spin (~0.1 s by default) unless told to sleep.
    Measured as the CPU time the process uses while its main thread sleeps 0.1 s."""
    spinning = idle_cpu("numpy only")
    if spinning < 0.01:
        pytest.skip(f"no spinning visible even without tinybin ({spinning:.3f} s): one core or a very busy machine")
    for order in ("numpy first", "tinybin first"):
        assert idle_cpu(order) < min(0.005, spinning / 4), order


def test_warns_once_when_the_loaded_blas_cannot_be_reached():
    """Where the loaded OpenBLAS is out of reach (here: /proc/self/maps unreadable), one warning names
    the fix, and the kernels stay serial."""
    probe = ("import builtins, warnings\nimport numpy\nreal_open = builtins.open\n"
             "def no_maps(path, *a, **k):\n"
             "    if path == '/proc/self/maps':\n        raise OSError('hidden')\n    return real_open(path, *a, **k)\n"
             "builtins.open = no_maps\n"
             "with warnings.catch_warnings(record=True) as caught:\n"
             "    warnings.simplefilter('always')\n"
             "    import tinybin\n    from tinybin import threads\n"
             "builtins.open = real_open\n"
             "from tinybin import kernels\n"
             "print(threads.blas_threads_sleep(), kernels.current().parallel)\n"
             "for w in caught:\n    print(w.category.__name__, w.message)\n")
    proc = subprocess.run([sys.executable, "-c", probe], env=clean_env(), capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines[0] == "False False"
    warned = [line for line in lines[1:] if line.startswith("RuntimeWarning")]
    assert len(warned) == 1
    assert "import tinybin before numpy" in warned[0] and "OPENBLAS_THREAD_TIMEOUT=4" in warned[0]
