"""NUMBA_DISABLE_JIT=1, the debugging route the kernels' docstrings promise: every Numba kernel
then runs as ordinary Python, so a debugger can step through it. In a fresh process: `import
tinybin` works, a WRN-8-1 training step runs and learns, and a conv passes a gradient check by
each algorithm (im2col, direct, Winograd), each on its Numba kernels run as Python."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import warnings
    import numba
    import numpy as np
    import tinybin
    import tinybin.functional as F
    from tinybin import kernels
    from tinybin.kernels import bn_numba, direct_numba
    from tinybin.models import wrn
    from tinybin.optim import SGD
    from tinybin.tensor import Tensor

    assert numba.config.DISABLE_JIT
    assert not hasattr(bn_numba._stats, "py_func")               # plain Python functions, not compiled
    assert not hasattr(direct_numba._forward_rows, "py_func")
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    model = wrn(depth=8, width=1, variant="baseline2", rng=0)
    before = [p.data.copy() for p in model.parameters()]
    x, y = rng.uniform(0, 255, (4, 8, 8, 3)).astype(np.float32), np.array([0, 1, 2, 3])
    plans = [kernels.conv_plan(m.weight.shape, (m.stride,) * 2, (m.padding,) * 4, np.float32).forward.algorithm
             for _, m in model.convs()]
    assert "direct" in plans, plans
    opt = SGD(model.parameters(), lr=0.1)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert np.isfinite(loss.item())
    assert all(not np.array_equal(a, p.data) for a, p in zip(before, model.parameters()) if p.grad is not None)
    print("step", loss.item(), plans)

    x, w = Tensor(rng.standard_normal((1, 4, 4, 16))), Tensor(rng.standard_normal((3, 3, 16, 16)))
    x.requires_grad = w.requires_grad = True
    for conv in ("im2col", "direct", "winograd2"):
        with kernels.settings(conv=conv, winograd_min_channels=1, winograd_float64=True):
            plan = kernels.conv_plan(w.shape, (1, 1), (1, 1, 1, 1), np.float64)
            assert {plan.forward.algorithm, plan.input_gradient.algorithm} == {conv}, plan
            tinybin.gradcheck(lambda a, b: F.conv2d(a, b, padding=1), x, w, max_elements=10, eps=1e-3)
        print("gradcheck", conv)
""")


def test_a_training_step_and_a_conv_gradcheck_run_without_jit():
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "TINYBIN_PARALLEL": "0"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["step"] + ["gradcheck"] * 3, proc.stdout
