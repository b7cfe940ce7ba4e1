"""avg_pool2d (padding excluded from the average) and global_avg_pool."""
import numpy as np
import pytest

from tinybin import kernels
from tinybin.ops.pool import (
    avg_pool2d,
    avg_pool2d_backward,
    avg_pool2d_forward,
    global_avg_pool,
    global_avg_pool_backward,
    global_avg_pool_forward,
)
from tinybin.tensor import Tensor

from conftest import numerical_grad, rel_error


def naive_avg_pool(x, k, s, pads):
    """Mean of the real cells of each window, one output cell at a time."""
    PT, PB, PL, PR = pads
    N, H, W, C = x.shape
    OH, OW = (H + PT + PB - k) // s + 1, (W + PL + PR - k) // s + 1
    out = np.zeros((N, OH, OW, C))
    for oh in range(OH):
        for ow in range(OW):
            h0, w0 = oh * s - PT, ow * s - PL
            cells = x[:, max(h0, 0):max(h0 + k, 0), max(w0, 0):max(w0 + k, 0), :]
            out[:, oh, ow, :] = cells.mean(axis=(1, 2))
    return out


CASES = [
    ((2, 4, 4, 3), 3, 2, (0, 1, 0, 1)),  # TensorFlow "same": the paper's shortcut on an even map
    ((2, 5, 5, 2), 3, 2, 1),
    ((1, 7, 6, 2), 3, 1, 1),
    ((2, 5, 7, 2), 2, 2, (1, 0, 0, 1)),
    ((1, 6, 5, 3), 3, 3, (2, 1, 0, 2)),
]


@pytest.mark.parametrize("reference", [False, True], ids=["numba", "numpy"])
@pytest.mark.parametrize("x_shape, k, s, padding", CASES)
def test_avg_pool_matches_definition_and_gradcheck(x_shape, k, s, padding, reference):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    pads = (padding,) * 4 if np.ndim(padding) == 0 else padding
    with kernels.settings(reference=reference):
        out, cache = avg_pool2d_forward(x, k, s, padding)
        np.testing.assert_allclose(out, naive_avg_pool(x, k, s, pads), rtol=0, atol=1e-12)
        dout = rng.standard_normal(out.shape)
        dx = avg_pool2d_backward(dout, cache)
        assert rel_error(dx, numerical_grad(lambda: avg_pool2d_forward(x, k, s, padding)[0], x, dout)) < 1e-6


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("x_shape, k, s, padding", CASES + [((5, 32, 32, 16), 3, 2, (0, 1, 0, 1))])
def test_numba_avg_pool_gives_numpys_bits(x_shape, k, s, padding, parallel):
    """kernels/pool_numba.py adds in the NumPy version's order: the same float32 bits, -0.0 and
    NaN included, forward and backward."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(x_shape) * 100).astype(np.float32)
    x.reshape(-1)[:4] = [-0.0, np.nan, 1e-30, -1e-30]
    dout = None
    results = []
    for reference in (False, True):
        with kernels.settings(reference=reference, parallel=parallel):
            out, cache = avg_pool2d_forward(x, k, s, padding)
            dout = rng.standard_normal(out.shape).astype(np.float32) if dout is None else dout
            results.append((out, avg_pool2d_backward(dout, cache)))
    (out_fast, dx_fast), (out_ref, dx_ref) = results
    np.testing.assert_array_equal(out_fast, out_ref)
    np.testing.assert_array_equal(np.signbit(out_fast), np.signbit(out_ref))
    np.testing.assert_array_equal(dx_fast, dx_ref)


def test_border_output_is_mean_of_real_cells_only():
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    out, _ = avg_pool2d_forward(x, 3, 2, (0, 1, 0, 1))          # 2x2 output
    # bottom-right window covers rows 2..4, cols 2..4: only rows/cols 2..3 are real
    assert out[0, 1, 1, 0] == np.mean([10, 11, 14, 15])
    assert out[0, 0, 0, 0] == np.mean(x[0, :3, :3, 0])          # an interior window: 9 cells
    out, _ = avg_pool2d_forward(x, 3, 2, 1)                     # symmetric padding 1
    assert out[0, 0, 0, 0] == np.mean([0, 1, 4, 5])             # corner: 4 real cells of 9


def test_avg_pool_function_and_dtype():
    x = Tensor(np.random.default_rng(1).standard_normal((2, 8, 8, 4)).astype(np.float32), requires_grad=True)
    y = avg_pool2d(x, size=3, stride=2, padding=(0, 1, 0, 1))
    assert y.shape == (2, 4, 4, 4) and y.dtype == np.float32
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad.dtype == np.float32 and x.grad.shape == x.shape


def test_avg_pool_bad_input():
    with pytest.raises(ValueError, match=r"\(4, 4, 3\)"):
        avg_pool2d_forward(np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match=r"\(1, 4, 4, 1\)"):
        avg_pool2d_forward(np.zeros((1, 4, 4, 1)), 2, 2, 3)   # a window made only of padding


def test_global_avg_pool():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 2))
    out, cache = global_avg_pool_forward(x)
    np.testing.assert_allclose(out, x.mean(axis=(1, 2)), atol=1e-15)
    dout = rng.standard_normal(out.shape)
    dx = global_avg_pool_backward(dout, cache)
    assert rel_error(dx, numerical_grad(lambda: global_avg_pool_forward(x)[0], x, dout)) < 1e-6
    t = Tensor(x, requires_grad=True)
    global_avg_pool(t).backward(dout)
    np.testing.assert_allclose(t.grad, dx)
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        global_avg_pool_forward(np.zeros((3, 4)))
