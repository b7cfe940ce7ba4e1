"""Winograd F(2×2, 3×3) and F(4×4, 3×3): the matrices compute a 3-tap correlation, the transforms
(NumPy reference and Numba) compute the convolution, gradients match central differences with
each algorithm, and the switch selects the layers it should."""
import os
import subprocess
import sys

import numpy as np
import pytest
from test_conv import naive_conv

import tinybin.functional as F
from tinybin import kernels
from tinybin.kernels import config, conv_algorithms, winograd_numba, winograd_ref
from tinybin.kernels.conv_winograd import forward as winograd_forward
from tinybin.ops.conv import conv2d_backward, conv2d_forward
from tinybin.tensor import Tensor

from conftest import numerical_grad, rel_error

ALGORITHMS = ["im2col", "winograd2", "winograd4"]
DW = ["im2col", "winograd"]


def random_layers(count, seed):
    """Random 3×3 stride-1 layers Winograd takes: (x shape, OC, padding with every pad <= 2)."""
    rng = np.random.default_rng(seed)
    layers = []
    while len(layers) < count:
        N, H, W, C, OC = (int(v) for v in (rng.integers(1, 4), rng.integers(1, 12), rng.integers(1, 12),
                                           rng.integers(1, 6), rng.integers(1, 6)))
        pads = tuple(int(p) for p in rng.integers(0, 3, size=4)) if rng.random() < 0.5 else (1, 1, 1, 1)
        if H + pads[0] + pads[1] >= 3 and W + pads[2] + pads[3] >= 3:
            layers.append(((N, H, W, C), OC, pads))
    return layers


@pytest.mark.parametrize("m", [2, 4])
def test_one_dimensional_matrices_compute_the_correlation(m):
    """y = Aᵀ[(G g) ⊙ (Bᵀ d)] gives y_i = sum_k d_{i+k} g_k: m outputs from m + 2 inputs."""
    BT, G, AT = winograd_ref.matrices(m)
    rng = np.random.default_rng(m)
    for _ in range(20):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        direct = np.array([d[i:i + 3] @ g for i in range(m)])
        np.testing.assert_allclose(AT @ ((G @ g) * (BT @ d)), direct, rtol=0, atol=1e-13)
    assert AT.shape == (m, m + 2) and BT.shape == (m + 2, m + 2) and G.shape == (m + 2, 3)


@pytest.mark.parametrize("reference", [True, False], ids=["reference", "numba"])
@pytest.mark.parametrize("m", [2, 4])
def test_winograd_forward_equals_direct_conv(m, reference):
    rng = np.random.default_rng(10 + m)
    with kernels.settings(reference=reference):
        for x_shape, OC, pads in random_layers(25, m):
            x, w = rng.standard_normal(x_shape), rng.standard_normal((3, 3, x_shape[3], OC))
            out = winograd_forward(x, w, pads, m)
            np.testing.assert_allclose(out, naive_conv(x, w, (1, 1), pads), rtol=0, atol=1e-12)


@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
@pytest.mark.parametrize("m", [2, 4])
def test_numba_transforms_equal_reference(m, parallel):
    rng = np.random.default_rng(20 + m)
    T = m + 2
    for (N, H, W, C), OC, (PT, PB, PL, PR) in random_layers(25, 100 + m):
        OH, OW = H + PT + PB - 2, W + PL + PR - 2
        TH, TW = winograd_ref.tiles(OH, OW, m)
        P = N * TH * TW
        x = rng.standard_normal((N, H, W, C))
        M, dout = rng.standard_normal((T * T, P, OC)), rng.standard_normal((N, OH, OW, OC))
        V_ref = winograd_ref.input_tiles(x, np.full((T * T, P, C), np.nan), m, PT, PL, TH, TW)
        out_ref = winograd_ref.output_tiles(M, np.full((N, OH, OW, OC), np.nan), m, TH, TW)
        dM_ref = winograd_ref.dout_tiles(dout, np.full((T * T, P, OC), np.nan), m, TH, TW)
        with kernels.settings(parallel=parallel):
            V_fast = winograd_numba.input_tiles(x, np.full((T * T, P, C), np.nan), m, PT, PL, TH, TW)
            out_fast = winograd_numba.output_tiles(M, np.full((N, OH, OW, OC), np.nan), m, TH, TW)
            dM_fast = winograd_numba.dout_tiles(dout, np.full((T * T, P, OC), np.nan), m, TH, TW)
        np.testing.assert_allclose(V_fast, V_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(out_fast, out_ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(dM_fast, dM_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [2, 4])
def test_adjoints(m):
    """<output_tiles(M), Y> = <M, dout_tiles(Y)> and <transform_weights(w), D> = <w, weights_gradient(D)>:
    the backward transforms are the transposes of the forward ones."""
    rng = np.random.default_rng(30 + m)
    T, N, OH, OW, C, OC = m + 2, 2, 7, 5, 3, 4
    TH, TW = winograd_ref.tiles(OH, OW, m)
    M, Y = rng.standard_normal((T * T, N * TH * TW, OC)), rng.standard_normal((N, OH, OW, OC))
    out = winograd_ref.output_tiles(M, np.empty((N, OH, OW, OC)), m, TH, TW)
    dM = winograd_ref.dout_tiles(Y, np.empty_like(M), m, TH, TW)
    assert abs(np.sum(out * Y) - np.sum(M * dM)) < 1e-10
    w, D = rng.standard_normal((3, 3, C, OC)), rng.standard_normal((T * T, C, OC))
    assert abs(np.sum(winograd_ref.transform_weights(w, m) * D) - np.sum(w * winograd_ref.weights_gradient(D, m))) < 1e-10


@pytest.mark.parametrize("dw", DW)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("x_shape, padding", [
    ((2, 5, 5, 3), 1),
    ((1, 6, 7, 2), (0, 2, 1, 0)),
    ((2, 4, 4, 2), 2),
    ((1, 9, 3, 2), 0),
])
def test_gradcheck_through_functional_conv2d(algorithm, dw, x_shape, padding):
    """F.conv2d's gradients (the autograd path) against central differences of its forward,
    float64, random upstream gradient, every element."""
    rng = np.random.default_rng(40)
    x_data, w_data = rng.standard_normal(x_shape), rng.standard_normal((3, 3, x_shape[3], 3))
    with kernels.settings(conv=algorithm, winograd_min_channels=1, winograd_weight_gradient=dw, winograd_float64=True):
        x, w = Tensor(x_data, requires_grad=True), Tensor(w_data, requires_grad=True)
        out = F.conv2d(x, w, stride=1, padding=padding)
        dout = rng.standard_normal(out.shape)
        out.backward(dout)
        f = lambda: F.conv2d(Tensor(x_data), Tensor(w_data), stride=1, padding=padding).data
        # conv is linear in x and in w: central differences are exact but for rounding, which a
        # larger step shrinks (with 1e-6, entries of dw near zero show ~1e-6 relative rounding error)
        assert rel_error(x.grad, numerical_grad(f, x_data, dout, eps=1e-3)) < 1e-6
        assert rel_error(w.grad, numerical_grad(f, w_data, dout, eps=1e-3)) < 1e-6


@pytest.mark.parametrize("dw", DW)
@pytest.mark.parametrize("algorithm, max_rms", [("im2col", 1e-6), ("winograd2", 1.5e-6), ("winograd4", 1e-5)])
def test_float32_error_against_float64(algorithm, max_rms, dw):
    """float32 error of each algorithm against the float64 convolution, a WRN-20-4 stage-2 layer
    with 1-bit weights. Measured relative RMS error: im2col ~3e-7, winograd2 ~4e-7, winograd4
    ~2e-6 (kernels/__init__.py); a wrong transform gives O(1)."""
    rng = np.random.default_rng(50)
    x, dout = rng.standard_normal((4, 16, 16, 128)), rng.standard_normal((4, 16, 16, 128))
    w = np.sign(rng.standard_normal((3, 3, 128, 128))) * np.sqrt(2 / (9 * 128))
    out64, cache64 = conv2d_forward(x, w, 1, 1)
    grads64 = conv2d_backward(dout, cache64)
    with kernels.settings(conv=algorithm, winograd_weight_gradient=dw):
        out, cache = conv2d_forward(x.astype(np.float32), w.astype(np.float32), 1, 1)
        grads = conv2d_backward(dout.astype(np.float32), cache)
    for a, b in ((out, out64), *zip(grads, grads64)):
        assert a.dtype == np.float32
        assert np.sqrt(np.mean((a - b) ** 2) / np.mean(b ** 2)) < max_rms


def test_plans_by_layer(monkeypatch):
    """Winograd for 3×3 stride-1 layers with >= winograd_min_channels channels; im2col for the rest."""
    def forward(w_shape, stride=(1, 1), padding=(1, 1, 1, 1), dtype=np.float32):
        return kernels.conv_plan(w_shape, stride, padding, dtype).forward.algorithm

    expected = os.environ.get("TINYBIN_CONV", "winograd4+direct")
    assert kernels.current().conv == tuple(expected.split("+")) + (() if expected.endswith("im2col") else ("im2col",))
    with kernels.settings(conv="winograd4", winograd_min_channels=8):
        assert forward((3, 3, 8, 8)) == "winograd4"
        assert forward((3, 3, 8, 8), dtype=np.float64) == "im2col"            # float64: im2col
        with kernels.settings(winograd_float64=True):
            assert forward((3, 3, 8, 8), dtype=np.float64) == "winograd4"
        assert forward((3, 3, 8, 7)) == "im2col"                              # narrow output
        assert forward((3, 3, 8, 8), stride=(2, 2)) == "im2col"               # stride 2
        assert forward((1, 1, 8, 8), padding=(0, 0, 0, 0)) == "im2col"        # 1×1
        assert forward((3, 3, 8, 8), padding=(3, 0, 0, 0)) == "im2col"        # pad 3
        with kernels.settings(conv="winograd2", winograd_min_channels=1):
            assert forward((3, 3, 1, 1), padding=(0, 0, 0, 0)) == "winograd2"
        assert forward((3, 3, 1, 1), padding=(0, 0, 0, 0)) == "im2col"        # restored
    with kernels.settings(conv="im2col", winograd_min_channels=1):
        assert forward((3, 3, 8, 8)) == "im2col"

    def im2col_must_not_run(*args, **kwargs):
        raise AssertionError("im2col ran for a layer Winograd should take")

    x, w = np.ones((1, 6, 6, 8)), np.ones((3, 3, 8, 8))
    monkeypatch.setattr(conv_algorithms, "im2col", im2col_must_not_run)
    with kernels.settings(conv="winograd2", winograd_min_channels=8, winograd_weight_gradient="winograd",
                          winograd_float64=True):
        out, cache = conv2d_forward(x, w, 1, 1)
        assert [p.algorithm for p in cache.plan] == ["winograd2"] * 3
        conv2d_backward(out, cache)
        with pytest.raises(AssertionError, match="im2col ran"):
            conv2d_forward(x, w, 2, 1)

    def col2im_must_not_run(*args, **kwargs):
        raise AssertionError("col2im ran: dx of a Winograd layer is a Winograd forward")

    monkeypatch.undo()
    with kernels.settings(conv="im2col"):
        out, cache = conv2d_forward(x, w, 1, 1)
        expected = conv2d_backward(out, cache)
    monkeypatch.setattr(conv_algorithms, "col2im", col2im_must_not_run)
    with kernels.settings(conv="winograd4", winograd_min_channels=8, winograd_float64=True,
                          winograd_weight_gradient="im2col"):
        out, cache = conv2d_forward(x, w, 1, 1)
        assert [p.algorithm for p in cache.plan] == ["winograd4", "winograd4", "im2col"]  # dw im2col, dx Winograd
        for got, want in zip(conv2d_backward(out, cache), expected):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


def test_the_table_rows_are_the_settings_names():
    assert tuple(conv_algorithms.ALGORITHMS) == config.CONV_NAMES


def test_bad_settings_named():
    with pytest.raises(ValueError, match=r"unknown convolution algorithm 'winograd3'; known: im2col, direct, winograd2, winograd4"):
        kernels.settings(conv="winograd3")
    with pytest.raises(ValueError, match="winograd_min_channels"):
        kernels.settings(winograd_min_channels=-1)
    with pytest.raises(ValueError, match="winograd_weight_gradient must be 'im2col' or 'winograd'"):
        kernels.settings(winograd_weight_gradient="fft")
    with pytest.raises(ValueError, match="after im2col"):
        kernels.settings(conv="im2col+winograd4")
    with pytest.raises(ValueError, match="unknown kernel setting.*conv_algorithm"):
        kernels.settings(conv_algorithm="im2col")
    assert kernels.current() == config.from_environment()     # nothing changed
    for name, value in (("TINYBIN_CONV", "fft"), ("TINYBIN_CONV_DW", "fft"), ("TINYBIN_CONV_MIN_CHANNELS", "x"),
                        ("TINYBIN_PARALLEL", "maybe")):
        env = {**os.environ, name: value}
        proc = subprocess.run([sys.executable, "-c", "import numpy as np; from tinybin.ops.conv import conv2d_forward; "
                               "conv2d_forward(np.ones((1, 4, 4, 1)), np.ones((3, 3, 1, 1)))"],
                              env=env, capture_output=True, text=True)
        assert proc.returncode != 0 and name in proc.stderr and f"'{value}'" in proc.stderr, proc.stderr


def test_environment_read_as_typed_settings():
    settings = config.from_environment({"TINYBIN_CONV": "winograd2+direct", "TINYBIN_CONV_MIN_CHANNELS": "16",
                                        "TINYBIN_CONV_DW": "im2col", "TINYBIN_CONV_FLOAT64": "1",
                                        "TINYBIN_REFERENCE": "1", "TINYBIN_FUSED_BN": "0", "TINYBIN_PARALLEL": "0"})
    assert settings == config.Settings(reference=True, parallel=False, fused_bn=False,
                                       conv=("winograd2", "direct", "im2col"), winograd_min_channels=16,
                                       winograd_weight_gradient="im2col", winograd_float64=True)
    assert config.Settings().winograd_weight_gradient == "winograd"        # the default, which the variable changed
    with kernels.use_conv("winograd2", min_channels=16, dw="winograd", float64=True):   # earlier releases' name
        assert kernels.current().conv == ("winograd2", "im2col") and kernels.current().winograd_min_channels == 16


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("T2, P, C, OC", [(16, 700, 8, 16), (36, 40, 16, 32), (4, 3, 5, 7)])
def test_weight_products_equal_the_reference_on_any_number_of_threads(T2, P, C, OC, dtype):
    """The Numba products of the weight gradient (chunks of tiles, register blocks; a shape off
    the block falls back to matmul) against winograd_ref's matmul, and serial against parallel
    bit for bit: P = 700 tiles makes 3 chunks whose partial sums are added."""
    rng = np.random.default_rng(60)
    V, dM = rng.standard_normal((T2, P, C)).astype(dtype), rng.standard_normal((T2, P, OC)).astype(dtype)
    want = winograd_ref.weight_products(V.astype(np.float64), dM.astype(np.float64))
    with kernels.settings(parallel=False):
        serial = winograd_numba.weight_products(V, dM)
    with kernels.settings(parallel=True):
        parallel = winograd_numba.weight_products(V, dM)
    assert serial.shape == (T2, C, OC) and serial.dtype == dtype
    np.testing.assert_allclose(serial, want, rtol=1e-12 if dtype == np.float64 else 2e-4, atol=1e-9 if dtype == np.float64 else 2e-3)
    assert np.array_equal(serial, parallel)
    if P > winograd_numba.MIN_ROWS:
        assert winograd_numba.chunking(P)[1] > 1                          # several chunks ran


def test_gradcheck_of_the_winograd_weight_gradient_through_the_products_kernel():
    """dw of a Winograd layer wide enough for the products' register block (C 8, OC 16), float64,
    against central differences with a random upstream gradient."""
    rng = np.random.default_rng(61)
    x_data, w_data = rng.standard_normal((2, 6, 7, 8)), rng.standard_normal((3, 3, 8, 16))
    with kernels.settings(conv="winograd4", winograd_min_channels=8, winograd_weight_gradient="winograd",
                          winograd_float64=True):
        w = Tensor(w_data, requires_grad=True)
        out = F.conv2d(Tensor(x_data), w, stride=1, padding=1)
        dout = rng.standard_normal(out.shape)
        out.backward(dout)
        assert kernels.conv_plan(w_data.shape, (1, 1), (1, 1, 1, 1), np.float64).weight_gradient.algorithm == "winograd4"
        f = lambda: F.conv2d(Tensor(x_data), Tensor(w_data), stride=1, padding=1).data  # noqa: E731
        assert rel_error(w.grad, numerical_grad(f, w_data, dout, eps=1e-3)) < 1e-6
