"""conv2d: Numba kernels equal the NumPy reference, gradients match central differences,
bad inputs are refused with the shapes named."""
import os

import numpy as np
import pytest

from tinybin import kernels
from tinybin.kernels import im2col_numba, im2col_ref
from tinybin.ops.conv import conv2d, conv2d_backward, conv2d_forward
from tinybin.tensor import Tensor

from conftest import numerical_grad, rel_error


@pytest.fixture(params=["im2col", "winograd2", "winograd2/dw", "winograd4", "winograd4/dw"])
def algorithm(request):
    """Runs a test with each convolution algorithm on every layer it can take (min_channels=1,
    float64 too; im2col for the rest); "/dw": the weight gradient by Winograd too."""
    name, _, dw = request.param.partition("/")
    with kernels.settings(conv=name, winograd_min_channels=1, winograd_float64=True,
                          winograd_weight_gradient="winograd" if dw else "im2col"):
        yield request.param


def naive_conv(x, w, stride, pads):
    """The definition, one output cell at a time (an independent check of the forward)."""
    (SH, SW), (PT, PB, PL, PR) = stride, pads
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    KH, KW, C, OC = w.shape
    OH, OW = (xp.shape[1] - KH) // SH + 1, (xp.shape[2] - KW) // SW + 1
    out = np.zeros((x.shape[0], OH, OW, OC))
    for oh in range(OH):
        for ow in range(OW):
            window = xp[:, oh * SH:oh * SH + KH, ow * SW:ow * SW + KW, :]  # N, KH, KW, C
            out[:, oh, ow, :] = np.einsum("nijc,ijco->no", window, w)
    return out


def random_configs(count, seed):
    """Random (x shape, w shape, stride, padding) with a valid output size."""
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        N, H, W, C, OC = rng.integers(1, 4), rng.integers(1, 10), rng.integers(1, 10), rng.integers(1, 6), rng.integers(1, 5)
        KH, KW = rng.choice([1, 2, 3], size=2) if rng.random() < 0.3 else [rng.choice([1, 3])] * 2
        stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4))) if rng.random() < 0.3 else int(rng.integers(1, 4))
        padding = tuple(int(p) for p in rng.integers(0, 3, size=4)) if rng.random() < 0.5 else int(rng.integers(0, 3))
        S = (stride, stride) if np.ndim(stride) == 0 else stride
        P = (padding,) * 4 if np.ndim(padding) == 0 else padding
        if H + P[0] + P[1] < KH or W + P[2] + P[3] < KW:
            continue
        configs.append(((N, H, W, C), (KH, KW, C, OC), stride, padding, S, P))
    return configs


# ----- Numba == reference ------------------------------------------------------------------
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("seed", range(3))
def test_numba_kernels_equal_reference(seed, parallel):
    rng = np.random.default_rng(100 + seed)
    for x_shape, w_shape, _, _, (SH, SW), (PT, PB, PL, PR) in random_configs(40, seed):
        x = rng.standard_normal(x_shape)
        KH, KW = w_shape[:2]
        N, H, W, C = x_shape
        OH, OW = im2col_ref.output_size(H, W, KH, KW, SH, SW, PT, PB, PL, PR)
        geometry = (KH, KW, SH, SW, PT, PB, PL, PR)
        c_ref = im2col_ref.im2col(x, np.full((N * OH * OW, KH * KW * C), np.nan), *geometry)
        dcols = rng.standard_normal(c_ref.shape)
        d_ref = im2col_ref.col2im(dcols, np.full(x_shape, np.nan), *geometry)
        with kernels.settings(parallel=parallel):
            c_fast = im2col_numba.im2col(x, np.full((N * OH * OW, KH * KW * C), np.nan), *geometry)
            d_fast = im2col_numba.col2im(dcols, np.full(x_shape, np.nan), *geometry)
        np.testing.assert_array_equal(c_fast, c_ref)  # pure copies: bit-identical
        np.testing.assert_allclose(d_fast, d_ref, rtol=0, atol=1e-12)


def test_conv_numba_equals_reference_and_definition(algorithm):
    rng = np.random.default_rng(7)
    for x_shape, w_shape, stride, padding, S, P in random_configs(30, 11):
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        out, cache = conv2d_forward(x, w, stride, padding)
        np.testing.assert_allclose(out, naive_conv(x, w, S, P), rtol=0, atol=1e-12)
        dout = rng.standard_normal(out.shape)
        dx, dw = conv2d_backward(dout, cache)
        with kernels.settings(reference=True):
            out_r, cache_r = conv2d_forward(x, w, stride, padding)
            dx_r, dw_r = conv2d_backward(dout, cache_r)
        assert not kernels.current().reference
        for fast, ref in ((out, out_r), (dx, dx_r), (dw, dw_r)):
            np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-12)


# ----- gradient checks ---------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, k, stride, padding", [
    ((2, 5, 5, 3), 3, 1, 1),             # 3x3, stride 1, symmetric
    ((2, 7, 6, 3), 3, 2, 1),             # stride 2, odd height
    ((2, 6, 6, 2), 3, 2, (0, 1, 0, 1)),  # TensorFlow "same", stride 2, even map
    ((1, 5, 7, 3), 3, (1, 2), (2, 0, 1, 2)),  # asymmetric everything
    ((2, 5, 5, 4), 1, 1, 0),             # 1x1
    ((2, 7, 7, 3), 1, 2, 0),             # 1x1, stride 2
    ((1, 7, 5, 2), 3, 3, (1, 2, 0, 1)),  # stride 3
    ((1, 6, 5, 3), 3, 1, (0, 1, 0, 1)),  # stride 1, TensorFlow "same"
    ((1, 5, 6, 2), 3, 1, 0),             # stride 1, no padding
    ((1, 6, 7, 2), 3, 1, (2, 0, 1, 2)),  # stride 1, asymmetric, pads up to KH - 1
    ((1, 7, 7, 2), 5, 1, (1, 3, 4, 0)),  # 5x5, stride 1
])
@pytest.mark.parametrize("reference", [False, True])
def test_conv_gradcheck(x_shape, k, stride, padding, reference, algorithm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((k, k, x_shape[3], 3))
    with kernels.settings(reference=reference):
        out, cache = conv2d_forward(x, w, stride, padding)
        dout = rng.standard_normal(out.shape)
        dx, dw = conv2d_backward(dout, cache)
        f = lambda: conv2d_forward(x, w, stride, padding)[0]
        # conv is linear in x and in w: central differences are exact but for rounding, which a
        # larger step shrinks (with 1e-6, entries of dw near zero show ~1e-6 relative rounding error)
        assert rel_error(dx, numerical_grad(f, x, dout, eps=1e-3)) < 1e-6
        assert rel_error(dw, numerical_grad(f, w, dout, eps=1e-3)) < 1e-6


def test_conv_function_backward_through_tensors():
    rng = np.random.default_rng(1)
    x = Tensor(rng.standard_normal((2, 6, 6, 3)), requires_grad=True)
    w = Tensor(rng.standard_normal((3, 3, 3, 4)), requires_grad=True)
    out = conv2d(x, w, stride=2, padding=(0, 1, 0, 1))
    assert out.shape == (2, 3, 3, 4)
    dout = rng.standard_normal(out.shape)
    out.backward(dout)
    dx, dw = conv2d_backward(dout, conv2d_forward(x.data, w.data, 2, (0, 1, 0, 1))[1])
    np.testing.assert_allclose(x.grad, dx, atol=1e-12)
    np.testing.assert_allclose(w.grad, dw, atol=1e-12)


def test_needs_input_grad_false_skips_dx(monkeypatch):
    rng = np.random.default_rng(2)
    x = Tensor(rng.standard_normal((2, 5, 5, 3)))  # e.g. the image batch into the first conv
    w = Tensor(rng.standard_normal((3, 3, 3, 4)), requires_grad=True)

    def col2im_must_not_run(*args, **kwargs):
        raise AssertionError("col2im called although the input needs no gradient")

    monkeypatch.setattr(kernels, "col2im", col2im_must_not_run)
    out = conv2d(x, w, padding=1)
    out.backward(np.ones(out.shape))
    assert x.grad is None and w.grad.shape == (3, 3, 3, 4)
    dx, dw = conv2d_backward(np.ones(out.shape), conv2d_forward(x.data, w.data, 1, 1)[1], needs=(False, True))
    assert dx is None and dw is not None


def test_two_live_layers_sharing_the_workspace(algorithm):
    """Both layers' forwards run before either backward: the shared column buffer must not
    leak one layer's columns into the other's gradients."""
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((2, 6, 6, 3)), rng.standard_normal((2, 6, 6, 3))
    w = rng.standard_normal((3, 3, 3, 3))
    d = rng.standard_normal((2, 6, 6, 3))
    alone = conv2d_backward(d, conv2d_forward(x1, w, 1, 1)[1])
    _, cache1 = conv2d_forward(x1, w, 1, 1)
    _, cache2 = conv2d_forward(x2, w, 1, 1)   # overwrites the workspace
    conv2d_backward(d, cache2)
    both = conv2d_backward(d, cache1)
    for a, b in zip(alone, both):
        np.testing.assert_array_equal(a, b)


def test_float32_in_float32_out():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 8, 8, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    out, cache = conv2d_forward(x, w, 2, (0, 1, 0, 1))
    dx, dw = conv2d_backward(np.ones(out.shape, np.float32), cache)
    assert out.dtype == dx.dtype == dw.dtype == np.float32
    np.testing.assert_allclose(out, naive_conv(x.astype(np.float64), w.astype(np.float64), (2, 2), (0, 1, 0, 1)),
                               rtol=1e-4, atol=1e-4)


# ----- bad inputs --------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, w_shape, match", [
    ((5, 5, 3), (3, 3, 3, 4), r"\(5, 5, 3\).*\(3, 3, 3, 4\)"),                   # wrong rank
    ((2, 5, 5, 3), (3, 3, 4), r"\(2, 5, 5, 3\).*\(3, 3, 4\)"),
    ((2, 5, 5, 3), (3, 3, 2, 4), r"channel mismatch.*\(2, 5, 5, 3\).*\(3, 3, 2, 4\)"),
    ((2, 3, 8, 8), (3, 3, 3, 4), r"\(2, 3, 8, 8\) looks like NCHW; tinybin is NHWC"),
    ((2, 2, 2, 3), (3, 3, 3, 4), r"output would be 0x0.*\(2, 2, 2, 3\).*\(3, 3, 3, 4\)"),
])
def test_bad_shapes_raise(x_shape, w_shape, match):
    with pytest.raises(ValueError, match=match):
        conv2d_forward(np.zeros(x_shape), np.zeros(w_shape))


def test_bad_dtype_stride_padding_raise():
    x, w = np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 3, 2))
    with pytest.raises(ValueError, match=r"float32.*float64|float64.*float32"):
        conv2d_forward(x.astype(np.float32), w)
    with pytest.raises(ValueError, match="stride"):
        conv2d_forward(x, w, stride=0)
    with pytest.raises(ValueError, match="padding"):
        conv2d_forward(x, w, padding=(1, 1))
    with pytest.raises(ValueError, match="padding"):
        conv2d_forward(x, w, padding=-1)


def test_reference_setting_picks_the_kernel_module():
    assert kernels.implementation() is im2col_numba
    with kernels.settings(reference=True):
        assert kernels.implementation() is im2col_ref
    assert kernels.implementation() is im2col_numba
    kernels.use_reference(True)          # the name of earlier releases: the same setting, at once
    try:
        assert kernels.implementation("direct").__name__.endswith("direct_ref")
    finally:
        kernels.settings(reference=False)


THREADS_PROBE = """
import os, sys
{first}
import numba
from tinybin import kernels, threads
print(os.environ.get("OPENBLAS_THREAD_TIMEOUT"), os.environ.get("OMP_WAIT_POLICY"),
      threads.blas_threads_sleep(), kernels.current().parallel, numba.config.NUMBA_NUM_THREADS > 1)
"""


@pytest.mark.parametrize("first, extra_env, sleeps", [
    ("import tinybin", {}, True),                                    # tinybin first: the env applies
    ("import numpy", {}, True),                                      # numpy first: applied to the loaded OpenBLAS
    ("import numpy", {"OPENBLAS_THREAD_TIMEOUT": "6"}, True),        # numpy first, the shell set it
    ("import tinybin", {"TINYBIN_PARALLEL": "0"}, True),             # override: serial
    ("import numpy", {"TINYBIN_PARALLEL": "1"}, True),               # override: parallel
])
def test_thread_environment_and_kernel_choice(first, extra_env, sleeps):
    """Parallel kernels only where OpenBLAS's idle threads sleep (tinybin/threads.py)."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "TINYBIN_PARALLEL")}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", THREADS_PROBE.format(first=first)], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    timeout, wait_policy, blas_sleeps, parallel, several_threads = out
    assert timeout == extra_env.get("OPENBLAS_THREAD_TIMEOUT", "4") and wait_policy == "PASSIVE"
    assert blas_sleeps == str(sleeps)
    forced = extra_env.get("TINYBIN_PARALLEL")
    expected = (forced == "1") if forced else (sleeps and several_threads == "True")
    assert parallel == str(expected)
