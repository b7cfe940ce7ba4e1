"""The direct stride-1 convolution (kernels/direct_ref.py, direct_numba.py): equal to im2col's,
serial equal to parallel bit for bit, gradients match central differences, chosen for the
layers it is meant for."""
import numpy as np
import pytest

from tinybin import kernels
from tinybin.kernels import direct_numba, direct_ref
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
    (5, 4, 4, 4, 16, 3, (1, 1, 1, 1)),   # C = 4: dw direct, dx by col2im
]


def im2col_conv(x, w, padding, dout):
    with kernels.use_conv("im2col"):
        out, cache = conv2d_forward(x, w, 1, padding)
        dx, dw = conv2d_backward(dout, cache)
    return out, dx, dw


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("module", [direct_ref, direct_numba])
def test_direct_equals_im2col_in_float64(shape, module):
    N, H, W, C, OC, K, padding = shape
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((N, H, W, C)), rng.standard_normal((K, K, C, OC))
    out = module.forward(x, w, padding)
    dout = rng.standard_normal(out.shape)
    ref_out, ref_dx, ref_dw = im2col_conv(x, w, padding, dout)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(module.grad_weights(x, dout, padding, K, K), ref_dw, rtol=0, atol=1e-12)
    if C % direct_numba.B == 0:
        np.testing.assert_allclose(module.grad_input(dout, w, padding), ref_dx, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_direct_serial_equals_parallel_bit_for_bit(shape):
    """Threads split the work, never a sum: the weight gradient's chunks are fixed, so the bits
    do not depend on the thread count."""
    N, H, W, C, OC, K, padding = shape
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((N, H, W, C), np.float32), rng.standard_normal((K, K, C, OC), np.float32)
    serial = direct_numba.forward(x, w, padding, parallel=False)
    assert np.array_equal(serial, direct_numba.forward(x, w, padding, parallel=True))
    dout = rng.standard_normal(serial.shape, np.float32)
    assert np.array_equal(direct_numba.grad_weights(x, dout, padding, K, K, parallel=False),
                          direct_numba.grad_weights(x, dout, padding, K, K, parallel=True))


def test_direct_float32_error_is_that_of_im2col():
    """float32 against the float64 result: the direct sums are no less accurate than im2col's."""
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 8, 8, 16)), np.sign(rng.standard_normal((3, 3, 16, 16)))
    exact = direct_ref.forward(x, w, (1, 1, 1, 1))
    x32, w32 = x.astype(np.float32), w.astype(np.float32)

    def error(out):
        return np.sqrt(np.mean((out - exact) ** 2) / np.mean(exact ** 2))

    with kernels.use_conv("im2col"):
        im2col_error = error(conv2d_forward(x32, w32, 1, 1)[0])
    assert error(direct_numba.forward(x32, w32, (1, 1, 1, 1))) < 2 * im2col_error + 1e-7


@pytest.mark.parametrize("reference", [False, True])
def test_conv_gradcheck_through_the_direct_kernels(reference):
    """The whole op (dispatch included) against central differences in float64."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 5, 6, 16)), rng.standard_normal((3, 3, 16, 16)) / 12
    padding = (1, 0, 2, 1)
    with kernels.use_reference(reference):
        assert kernels.direct_passes(w.shape, (1, 1), padding, x.dtype) == (True, True, True)
        out, cache = conv2d_forward(x, w, 1, padding)
        dout = rng.standard_normal(out.shape)
        dx, dw = conv2d_backward(dout, cache)

        def f():
            return conv2d_forward(x, w, 1, padding)[0]
        assert rel_error(dx, numerical_grad(f, x, dout, eps=1e-3)) < 1e-6
        assert rel_error(dw, numerical_grad(f, w, dout, eps=1e-3)) < 1e-6


def test_direct_passes_by_layer():
    """WRN-20-1's layers: the stride-1 ones run direct, stride 2 keeps im2col, Winograd keeps the
    wide ones, the 3-channel stem runs its forward direct but its weight gradient by im2col."""
    same = (1, 1, 1, 1)
    with kernels.use_conv("winograd4", min_channels=64):
        assert kernels.direct_passes((3, 3, 16, 16), (1, 1), same) == (True, True, True)
        assert kernels.direct_passes((3, 3, 32, 32), (1, 1), same) == (True, True, True)
        assert kernels.direct_passes((3, 3, 64, 64), (1, 1), same) == (False, False, False)  # Winograd
        assert kernels.direct_passes((3, 3, 16, 32), (2, 2), same) == (False, False, False)  # stride 2
        assert kernels.direct_passes((3, 3, 3, 16), (1, 1), same) == (True, False, False)    # the stem
        assert kernels.direct_passes((3, 3, 16, 24), (1, 1), same) == (False, False, False)  # 24 % 16
        assert kernels.direct_passes((3, 3, 16, 16), (1, 1), (3, 0, 0, 0)) == (True, False, True)
    with kernels.use_conv("direct"):
        assert kernels.direct_passes((3, 3, 64, 64), (1, 1), same) == (True, True, True)
    with kernels.use_conv("im2col"):
        assert kernels.direct_passes((3, 3, 16, 16), (1, 1), same) == (False, False, False)
    assert (kernels.DIRECT_BLOCK, kernels.DIRECT_Q) == (direct_numba.B, direct_numba.Q)


def test_conv_op_calls_the_direct_kernels(monkeypatch):
    calls = []
    for name in ("forward", "grad_input", "grad_weights"):
        original = getattr(direct_numba, name)
        monkeypatch.setattr(direct_numba, name,
                            lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    x, w = np.ones((2, 6, 6, 16), np.float32), np.ones((3, 3, 16, 16), np.float32)
    with kernels.use_conv("direct"):
        out, cache = conv_op.conv2d_forward(x, w, 1, 1)
        conv_op.conv2d_backward(out, cache)
    assert calls == ["forward", "grad_weights", "grad_input", "forward"]  # dx is the flipped forward
