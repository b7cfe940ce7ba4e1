"""The Numba activation kernels (kernels/pointwise_numba.py) give the NumPy reference's bits,
serial and parallel, including NaN, ±inf, the kinks and -0.0."""
import numpy as np
import pytest

import tinybin.functional as F
from tinybin import kernels
from tinybin.kernels import pointwise_numba
from tinybin.tensor import Tensor


def special_values(dtype, size=200_003, seed=0):
    """Normal values (scaled so ELU's exp matters) with the awkward ones mixed in; an odd size
    so the last parallel chunk is partial."""
    x = (np.random.default_rng(seed).standard_normal(size) * 3).astype(dtype)
    x[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1.0, -1.0000001]
    return x


def run_both(fn, *arrays, parallel):
    """fn's output and input gradient (random upstream) with the Numba kernels and with NumPy."""
    results = []
    for reference in (False, True):
        with kernels.settings(reference=reference, parallel=parallel):
            ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
            out = fn(*ts)
            dout = special_values(out.dtype, out.size, seed=1).reshape(out.shape)
            out.backward(dout)
            results.append((out.data, [t.grad for t in ts]))
    return results


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["relu", "srelu", "elu", "elu0.5"])
def test_kernels_equal_numpy_bit_for_bit(name, dtype, parallel):
    x = special_values(dtype)
    fn = {"relu": F.relu, "srelu": F.srelu, "elu": F.elu, "elu0.5": lambda t: F.elu(t, alpha=0.5)}[name]
    with np.errstate(all="ignore"):                                  # inf·0 in the backward, as in training
        (fast_out, fast_grads), (ref_out, ref_grads) = run_both(fn, x, parallel=parallel)
    np.testing.assert_array_equal(fast_out, ref_out)
    assert fast_out.dtype == ref_out.dtype == dtype
    for g_fast, g_ref in zip(fast_grads, ref_grads):
        np.testing.assert_array_equal(g_fast, g_ref)


def test_kernels_are_used_and_skipped_where_they_do_not_apply(monkeypatch):
    calls = []
    for name in ("clamp_below", "pass_above"):
        original = getattr(pointwise_numba, name)
        monkeypatch.setattr(pointwise_numba, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    x = Tensor(np.ones((4, 5), np.float32), requires_grad=True)
    (F.srelu(x) * F.relu(x)).sum().backward()
    assert sorted(calls) == ["clamp_below", "clamp_below", "pass_above", "pass_above"]
    calls.clear()
    F.srelu(Tensor(np.ones((4, 5), np.float32)[:, ::2]))            # not contiguous: NumPy
    with kernels.settings(reference=True):
        F.relu(Tensor(np.ones((4, 5), np.float32)))                  # the reference switch: NumPy
    assert calls == []
