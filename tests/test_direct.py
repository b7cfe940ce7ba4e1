"""The direct convolution (kernels/direct_ref.py, direct_numba.py): equal to im2col's,
serial equal to parallel bit for bit, gradients match central differences, chosen for the
layers it is meant for."""
import numpy as np
import pytest

from tinybin import kernels
from tinybin.kernels import conv_algorithms, direct_numba, direct_ref
from tinybin.ops import conv as conv_op
from tinybin.ops.conv import conv2d_backward, conv2d_forward

from conftest import numerical_grad, rel_error

# (N, H, W, C, OC, K, padding): widths that are multiples of the register block, rows that do
# and do not fill whole pixel blocks, asymmetric and full pads, 1×1 and 5×5, an odd image count
SHAPES = [
    (3, 7, 6, 16, 32, 3, (1, 1, 1, 1)),
    (2, 5, 9, 32, 16, 3, (0, 2, 1, 0)),
    (3, 6, 6, 16, 16, 3, (2, 2, 2, 2)),
    (2, 8, 5, 16, 16, 1, (0, 0, 0, 0)),
    (1, 9, 8, 16, 16, 5, (4, 0, 1, 2)),
    (5, 4, 4, 8, 16, 3, (1, 1, 1, 1)),   # C = 8: dx by col2im; dw in place where Q = 8 (256-bit vectors)
    (3, 7, 6, 3, 16, 3, (1, 1, 1, 1)),   # the stem's 3 channels: dw over a padded copy
    (2, 6, 9, 5, 32, 5, (2, 1, 0, 2)),   # KW*C = 25: two blocks of 16 (four of 8)
]


def im2col_conv(x, w, padding, dout, stride=1):
    with kernels.settings(conv="im2col"):
        out, cache = conv2d_forward(x, w, stride, padding)
        dx, dw = conv2d_backward(dout, cache)
    return out, dx, dw


# (N, H, W, C, OC, K, padding, stride): WRN's stride-2 layers and odd sizes, pads and strides
STRIDED = [
    (3, 8, 8, 16, 32, 3, (1, 1, 1, 1), (2, 2)),
    (2, 7, 9, 16, 16, 3, (0, 1, 1, 0), (2, 2)),
    (2, 9, 6, 32, 16, 3, (1, 1, 0, 0), (2, 1)),
    (2, 6, 7, 16, 16, 1, (0, 0, 0, 0), (2, 2)),
    (1, 11, 10, 16, 16, 5, (2, 2, 2, 2), (3, 2)),
    (2, 9, 8, 3, 16, 3, (1, 1, 1, 1), (2, 2)),     # few channels: dw over a padded copy
]


@pytest.mark.parametrize("shape", [s + ((1, 1),) for s in SHAPES] + STRIDED)
@pytest.mark.parametrize("module", [direct_ref, direct_numba])
def test_direct_equals_im2col_in_float64(shape, module):
    """Forward and dw at every stride; dx (stride 1 only) where C is a multiple of the block."""
    N, H, W, C, OC, K, padding, stride = shape
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((N, H, W, C)), rng.standard_normal((K, K, C, OC))
    out = module.forward(x, w, padding, stride)
    dout = rng.standard_normal(out.shape)
    ref_out, ref_dx, ref_dw = im2col_conv(x, w, padding, dout, stride)
    assert out.shape == ref_out.shape
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(module.grad_weights(x, dout, padding, K, K, stride), ref_dw, rtol=0, atol=1e-12)
    if stride == (1, 1) and C % direct_numba.B == 0:
        np.testing.assert_allclose(module.grad_input(dout, w, padding), ref_dx, rtol=0, atol=1e-12)
    if module is direct_numba:   # threads split the work, never a sum
        with kernels.settings(parallel=False):
            assert np.array_equal(module.forward(x, w, padding, stride), out)


@pytest.mark.parametrize("shape", SHAPES)
def test_direct_serial_equals_parallel_bit_for_bit(shape):
    """Threads split the work, never a sum: the weight gradient's chunks are fixed, so the bits
    do not depend on the thread count."""
    N, H, W, C, OC, K, padding = shape
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((N, H, W, C), np.float32), rng.standard_normal((K, K, C, OC), np.float32)
    dout = rng.standard_normal((N, H + padding[0] + padding[1] - K + 1, W + padding[2] + padding[3] - K + 1, OC),
                               np.float32)
    runs = []
    for parallel in (False, True):
        with kernels.settings(parallel=parallel):
            dw = direct_numba.grad_weights(x, dout, padding, K, K)
            runs.append((direct_numba.forward(x, w, padding), dw))
    (out_serial, dw_serial), (out_parallel, dw_parallel) = runs
    assert np.array_equal(out_serial, out_parallel) and np.array_equal(dw_serial, dw_parallel)


def test_direct_float32_error_is_that_of_im2col():
    """float32 against the float64 result: the direct sums are no less accurate than im2col's."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 8, 8, 16)), np.sign(rng.standard_normal((3, 3, 16, 16)))
    exact = direct_ref.forward(x, w, (1, 1, 1, 1))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)

    def error(out):
        return np.sqrt(np.mean((out - exact) ** 2) / np.mean(exact ** 2))

    with kernels.settings(conv="im2col"):
        im2col_error = error(conv2d_forward(x32, w32, 1, 1)[0])
    assert error(direct_numba.forward(x32, w32, (1, 1, 1, 1))) < 2 * im2col_error + 1e-7


# (stride, padding, the plan's passes, reference kernels, weight scale, step, tolerance)
GRADCHECKS = [
    ((1, 1), (1, 0, 2, 1), ("direct",) * 3, False, 1 / 12, 1e-3, 1e-6),
    ((1, 1), (1, 0, 2, 1), ("direct",) * 3, True, 1 / 12, 1e-3, 1e-6),
    ((2, 2), (1, 1, 1, 0), ("direct", "im2col", "direct"), False, 1, 1e-4, 1e-7),  # dx by col2im
]


@pytest.mark.parametrize("case", GRADCHECKS)
def test_conv_gradcheck_through_the_direct_kernels(case):
    """The whole op (dispatch included) against central differences in float64, stride 1 (Numba
    and reference kernels) and stride 2."""
    stride, padding, plan, reference, scale, eps, tol = case
    rng = np.random.default_rng(3 if stride == (1, 1) else 4)
    x = rng.standard_normal((2, 5, 6, 16) if stride == (1, 1) else (2, 6, 7, 16))
    w = rng.standard_normal((3, 3, 16, 16)) * scale
    with kernels.settings(reference=reference):
        assert passes(w.shape, stride, padding, x.dtype) == plan
        out, cache = conv2d_forward(x, w, stride, padding)
        dout = rng.standard_normal(out.shape)
        dx, dw = conv2d_backward(dout, cache)

        def f():
            return conv2d_forward(x, w, stride, padding)[0]
        assert rel_error(dx, numerical_grad(f, x, dout, eps=eps)) < tol
        assert rel_error(dw, numerical_grad(f, w, dout, eps=eps)) < tol


def passes(w_shape, stride=(1, 1), padding=(1, 1, 1, 1), dtype=np.float32):
    """(forward, input gradient, weight gradient): the algorithm of each pass of the layer's plan."""
    return tuple(p.algorithm for p in kernels.conv_plan(w_shape, stride, padding, dtype))


def test_plans_by_layer():
    """WRN-20-1's layers under the default order: the stride-1 ones run direct, stride 2 its
    forward and dw direct and dx by im2col, Winograd keeps the wide ones, the 3-channel stem
    runs its forward and dw direct and its dx by im2col."""
    D, I, W4 = "direct", "im2col", "winograd4"
    with kernels.settings(conv="winograd4+direct", winograd_min_channels=64):
        assert passes((3, 3, 16, 16)) == (D, D, D)
        assert passes((3, 3, 32, 32)) == (D, D, D)
        assert passes((3, 3, 64, 64)) == (W4, W4, W4)               # Winograd, its dw too
        with kernels.settings(winograd_weight_gradient="im2col"):
            assert passes((3, 3, 64, 64)) == (W4, W4, I)            # ... or its dw by im2col
        assert passes((3, 3, 64, 64), dtype=np.float64) == (D, D, D)  # float64: not Winograd
        assert passes((3, 3, 16, 32), stride=(2, 2)) == (D, I, D)   # stride 2
        assert passes((3, 3, 32, 64), stride=(2, 2), padding=(0, 1, 0, 1)) == (D, I, D)
        assert passes((3, 3, 64, 128), stride=(2, 2)) == (I, I, I)  # wider: im2col
        assert passes((3, 3, 16, 32), stride=(3, 3)) == (I, I, I)   # stride 3
        assert passes((3, 3, 3, 16)) == (D, I, D)                   # the stem
        assert passes((3, 3, 16, 24)) == (I, I, I)                  # 24 % 16
        assert passes((3, 3, 16, 16), padding=(3, 0, 0, 0)) == (D, I, D)
    with kernels.settings(conv="direct"):
        assert passes((3, 3, 64, 64)) == (D, D, D)
    with kernels.settings(conv="winograd4"):                        # no direct row: im2col below 64
        assert passes((3, 3, 16, 16)) == (I, I, I)
    with kernels.settings(conv="im2col"):
        assert passes((3, 3, 16, 16)) == (I, I, I)
    assert (conv_algorithms.DIRECT_BLOCK, conv_algorithms.DIRECT_Q) == (direct_numba.B, direct_numba.Q)


def test_conv_op_calls_the_direct_kernels(monkeypatch):
    calls = []
    for name in ("forward", "grad_input", "grad_weights"):
        original = getattr(direct_numba, name)
        monkeypatch.setattr(direct_numba, name,
                            lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    x, w = np.ones((2, 6, 6, 16), np.float32), np.ones((3, 3, 16, 16), np.float32)
    with kernels.settings(conv="direct"):
        out, cache = conv_op.conv2d_forward(x, w, 1, 1)
        conv_op.conv2d_backward(out, cache)
    assert calls == ["forward", "grad_weights", "grad_input", "forward"]  # dx is the flipped forward
