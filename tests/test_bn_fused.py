"""Fused batch norm (+ ReLU): the Numba kernels equal the NumPy reference, the reference equals
ops/norm.py followed by ReLU, its backward matches central differences, and the one-pass
statistics survive a large mean."""
import numpy as np
import pytest

from tinybin import kernels
from tinybin.kernels import bn_numba, bn_ref
from tinybin.ops.activations import relu_backward, relu_forward
from tinybin.ops.norm import batch_norm_backward, batch_norm_forward

from conftest import bn_inputs as inputs
from conftest import numerical_grad, rel_error


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_reference_equals_batch_norm_then_relu(relu, affine):
    rng, x, weight, bias = inputs(0, affine=affine)
    dout = rng.standard_normal(x.shape)
    y = np.empty_like(x)
    mean, inv_std, statistics = bn_ref.bn_act_forward(x, weight, bias, 1e-5, relu, y)
    z, cache = batch_norm_forward(x, weight, bias, eps=1e-5)
    np.testing.assert_array_equal(statistics.var, cache.statistics.var)
    y_ops, mask = relu_forward(z) if relu else (z, None)
    np.testing.assert_allclose(y, y_ops, rtol=0, atol=1e-12)
    dx = np.empty_like(x)
    dweight, dbias = bn_ref.bn_act_backward(dout, x, mean, inv_std, weight, bias, relu, dx)
    dx_ops, dw_ops, db_ops = batch_norm_backward(relu_backward(dout, mask) if relu else dout, cache)
    np.testing.assert_allclose(dx, dx_ops, rtol=0, atol=1e-12)
    if affine:
        np.testing.assert_allclose(dweight, dw_ops, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dbias, db_ops, rtol=0, atol=1e-12)
    else:
        assert dweight is None and dbias is None


@pytest.mark.parametrize("relu", [True, False])
def test_reference_gradcheck(relu):
    rng, x, weight, bias = inputs(1, shape=(2, 3, 3, 4))
    dout = rng.standard_normal(x.shape)

    def f():
        y = np.empty_like(x)
        bn_ref.bn_act_forward(x, weight, bias, 1e-5, relu, y)
        return y
    y = f()
    assert np.all(np.abs(y[y != 0]) > 1e-4)                 # away from the ReLU kink
    mean, inv_std, _ = bn_ref.bn_act_forward(x, weight, bias, 1e-5, relu, np.empty_like(x))
    dx = np.empty_like(x)
    dweight, dbias = bn_ref.bn_act_backward(dout, x, mean, inv_std, weight, bias, relu, dx)
    assert rel_error(dx, numerical_grad(f, x, dout, eps=1e-5)) < 1e-6
    assert rel_error(dweight, numerical_grad(f, weight, dout, eps=1e-5)) < 1e-6
    assert rel_error(dbias, numerical_grad(f, bias, dout, eps=1e-5)) < 1e-6


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (1, 1, 1, 3), (40, 7)])
def test_numba_equals_reference(shape, relu, affine, parallel):
    rng, x, weight, bias = inputs(2, shape, affine)
    dout = rng.standard_normal(x.shape)
    y_ref, y_nb = np.full_like(x, np.nan), np.full_like(x, np.nan)
    dx_ref, dx_nb = np.full_like(x, np.nan), np.full_like(x, np.nan)
    *state_ref, statistics_ref = bn_ref.bn_act_forward(x, weight, bias, 1e-5, relu, y_ref)
    g_ref = bn_ref.bn_act_backward(dout, x, *state_ref, weight, bias, relu, dx_ref)
    with kernels.settings(parallel=parallel):
        *state_nb, statistics_nb = bn_numba.bn_act_forward(x, weight, bias, 1e-5, relu, y_nb)
        g_nb = bn_numba.bn_act_backward(dout, x, *state_ref, weight, bias, relu, dx_nb)
    np.testing.assert_allclose(y_nb, y_ref, rtol=0, atol=1e-12)
    for a, b in zip([*state_nb, *statistics_nb], [*state_ref, *statistics_ref]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_nb, dx_ref, rtol=0, atol=1e-12)
    for a, b in zip(g_nb, g_ref):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_one_pass_statistics_with_a_large_mean_float32():
    """mean 1e4, std 1: E[x²] − E[x]² in float32 would lose every digit of the variance."""
    rng = np.random.default_rng(3)
    x = (1e4 + rng.standard_normal((64, 8, 8, 16))).astype(np.float32)
    mean, var = bn_numba.bn_stats(x)
    x64 = x.reshape(-1, 16).astype(np.float64)
    mean_ref, var_ref = x64.mean(axis=0), x64.var(axis=0)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-9)
    np.testing.assert_allclose(var, var_ref, rtol=1e-6)


def test_float32_in_float32_out():
    _, x, weight, bias = inputs(4)
    x, weight, bias = x.astype(np.float32), weight.astype(np.float32), bias.astype(np.float32)
    y = np.empty_like(x)
    mean, inv_std, statistics = bn_numba.bn_act_forward(x, weight, bias, 1e-5, True, y)
    assert statistics.mean.dtype == statistics.var.dtype == np.float64
    dx = np.empty_like(x)
    dweight, dbias = bn_numba.bn_act_backward(np.ones_like(x), x, mean, inv_std, weight, bias, True, dx)
    assert y.dtype == dx.dtype == mean.dtype == inv_std.dtype == dweight.dtype == dbias.dtype == np.float32
