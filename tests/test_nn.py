"""tinybin.nn: Module bookkeeping, Conv2d (32-bit and 1-bit), BatchNorm2d statistics."""
import numpy as np
import pytest

import tinybin.functional as F
from tinybin import Tensor, gradcheck, kernels, nn, no_grad


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, rng=0)
        self.bn = nn.BatchNorm2d(4, affine=True)
        self.act = nn.ReLU()
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1, bits=1, rng=1), nn.GlobalAvgPool())

    def forward(self, x):
        return self.head(self.act(self.bn(self.conv(x))))


def images(n=4, h=6, w=6, c=3, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).normal(size=(n, h, w, c)).astype(dtype)


def test_parameters_in_definition_order_with_dotted_names():
    m = Two()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["conv.weight", "bn.weight", "bn.bias", "head.0.weight"]
    assert [p.decay for p in m.parameters()] == [True, False, False, True]
    assert [n for n, _ in m.named_buffers()][:2] == ["bn.running_mean", "bn.running_var"]


def test_train_eval_and_zero_grad_reach_every_module():
    m = Two()
    m.eval()
    assert not any(sub.training for sub in m.modules())
    m.train()
    assert all(sub.training for sub in m.modules())
    F.cross_entropy(m(Tensor(images())), np.array([0, 1, 0, 1])).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_state_dict_round_trip_includes_bn_buffers(tmp_path):
    a, b = Two(), Two()
    a(Tensor(images()))  # moves the running statistics away from their initial values
    a.bn.weight.data += 0.5
    state = a.state_dict()
    assert "bn.running_mean" in state and "bn.calib_var" in state
    a.save(tmp_path / "m.npz")
    b.load(tmp_path / "m.npz")
    for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        np.testing.assert_array_equal(va, vb, err_msg=k)
    a.eval(), b.eval()
    x = Tensor(images(seed=3))
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_state_dict_rejects_missing_and_misshapen():
    m = Two()
    state = m.state_dict()
    del state["conv.weight"]
    with pytest.raises(KeyError, match="conv.weight"):
        m.load_state_dict(state)
    state = m.state_dict()
    state["conv.weight"] = np.zeros((1, 1, 3, 4), np.float32)
    with pytest.raises(ValueError, match="conv.weight"):
        m.load_state_dict(state)


def test_float64_parameters_make_the_model_compute_in_float64():
    m = Two()
    for p in m.parameters():
        p.data = p.data.astype(np.float64)
    out = m(Tensor(images(dtype=np.float64)))
    assert out.dtype == np.float64
    m.eval()
    assert m(Tensor(images(dtype=np.float64))).dtype == np.float64


def test_forward_hook_sees_output_and_can_be_removed():
    m = Two()
    seen = []
    remove = m.act.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    m(Tensor(images()))
    remove()
    m(Tensor(images()))
    assert seen == [(4, 6, 6, 4)]


# ----------------------------------------------------------------------------------- Conv2d


def test_conv_init_is_he_normal_fan_in():
    conv = nn.Conv2d(64, 128, 3, rng=0)
    assert conv.weight.shape == (3, 3, 64, 128)
    assert conv.weight.dtype == np.float32
    assert conv.multiplier == pytest.approx(np.sqrt(2 / (9 * 64)))
    assert conv.weight.data.std() == pytest.approx(conv.multiplier, rel=0.02)


def test_one_bit_conv_uses_two_values_and_unscaled_latent_gradient():
    """dL/dW_latent must equal dL/dW_b, the gradient w.r.t. the binarized weight — not c times it
    (P1: the straight-through gradient, unscaled). Checked against a 32-bit conv holding W_b = c·sign(W), not by finite
    differences (sign has zero derivative)."""
    x = images(n=3, h=5, w=5, c=4, seed=1)
    dout = np.random.default_rng(2).normal(size=(3, 3, 3, 6)).astype(np.float32)
    one = nn.Conv2d(4, 6, 3, stride=2, padding=1, bits=1, rng=3)
    wb = one.effective_weight().data
    assert set(np.unique(np.abs(wb))) == {np.float32(one.multiplier)}
    np.testing.assert_array_equal(np.sign(wb), np.where(one.weight.data >= 0, 1, -1))
    full = nn.Conv2d(4, 6, 3, stride=2, padding=1, bits=32)
    full.weight.data = wb.copy()
    out1, out32 = one(Tensor(x)), full(Tensor(x))
    np.testing.assert_array_equal(out1.data, out32.data)
    out1.backward(dout)
    out32.backward(dout)
    np.testing.assert_allclose(one.weight.grad, full.weight.grad, rtol=1e-6, atol=1e-6)
    assert not np.allclose(one.weight.grad, one.multiplier * full.weight.grad)  # the c·ste_sign pitfall


def test_conv_gradcheck_32_bit_and_input_gradient_1_bit():
    x = Tensor(images(n=2, h=5, w=5, c=2, dtype=np.float64), requires_grad=True)
    for bits in (32, 1):
        conv = nn.Conv2d(2, 3, 3, stride=2, padding=(0, 1, 0, 1), bits=bits, rng=4)
        conv.weight.data = conv.weight.data.astype(np.float64)
        tensors = (x, conv.weight) if bits == 32 else (x,)
        # bits=1: only the input; the latent weight's gradient is tested against W_b above
        if bits == 32:
            gradcheck(lambda a, w: F.conv2d(a, w, stride=2, padding=(0, 1, 0, 1)), *tensors)
        else:
            gradcheck(lambda a: conv(a), x)


# ----------------------------------------------------------------------------------- BatchNorm2d


def test_bn_train_mode_normalises_and_updates_moving_averages():
    """The first batch sets the averages; later ones blend in with weight 1 − momentum."""
    bn = nn.BatchNorm2d(3, momentum=0.9)
    x, x2 = images(n=8, seed=5) * 3 + 2, images(n=8, seed=6) - 1
    y = bn(Tensor(x)).data
    flat = y.reshape(-1, 3)
    np.testing.assert_allclose(flat.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(flat.var(0), 1, atol=1e-3)
    stats = lambda a: (a.reshape(-1, 3).mean(0), a.reshape(-1, 3).var(0))  # biased variance
    mean, var = stats(x)
    np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, var, rtol=1e-5)
    bn(Tensor(x2))
    mean2, var2 = stats(x2)
    np.testing.assert_allclose(bn.running_mean, 0.9 * mean + 0.1 * mean2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.running_var, 0.9 * var + 0.1 * var2, rtol=1e-5)
    assert bn.moving_batches == 2


def test_bn_eval_uses_stored_statistics():
    bn = nn.BatchNorm2d(3, affine=True)
    bn.running_mean = np.array([1.0, 2.0, 3.0], np.float32)
    bn.running_var = np.array([4.0, 9.0, 16.0], np.float32)
    bn.weight.data = np.array([1.0, 2.0, 0.5], np.float32)
    bn.bias.data = np.array([0.0, 1.0, -1.0], np.float32)
    bn.eval()
    x = images(seed=6)
    expect = (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5) * bn.weight.data + bn.bias.data
    np.testing.assert_allclose(bn(Tensor(x)).data, expect, rtol=1e-5, atol=1e-6)


def test_bn_recalibration_is_the_average_of_per_batch_statistics():
    bn = nn.BatchNorm2d(3)
    batches = [images(n=5, seed=s) * (s + 1) + s for s in range(4)]
    bn.start_recalibration()
    with no_grad():
        for b in batches:
            bn(Tensor(b))
    bn.finish_recalibration()
    means = [b.reshape(-1, 3).mean(0) for b in batches]
    variances = [b.reshape(-1, 3).var(0) for b in batches]  # biased, per batch
    np.testing.assert_allclose(bn.calib_mean, np.mean(means, 0), rtol=1e-5)
    np.testing.assert_allclose(bn.calib_var, np.mean(variances, 0), rtol=1e-5)
    np.testing.assert_array_equal(bn.running_mean, 0)  # moving averages untouched
    bn.eval()
    x = images(seed=9)
    np.testing.assert_allclose(bn(Tensor(x)).data, (x - bn.calib_mean) / np.sqrt(bn.calib_var + 1e-5), rtol=1e-4,
                               atol=1e-5)
    bn.inference_stats = "moving"
    np.testing.assert_allclose(bn(Tensor(x)).data, x / np.sqrt(1 + 1e-5), rtol=1e-5)


def test_bn_mean_only_subtracts_the_mean():
    bn = nn.BatchNorm2d(3, mean_only=True)
    x = images(seed=7) * 4 + 1
    y = bn(Tensor(x)).data
    np.testing.assert_allclose(y, x - x.reshape(-1, 3).mean(0), rtol=1e-5, atol=1e-5)
    assert bn.parameters() == []
    bn.eval()
    np.testing.assert_allclose(bn(Tensor(x)).data, x - bn.running_mean, rtol=1e-6)


def test_bn_gradients_train_and_eval_float64():
    x = Tensor(images(n=3, seed=8, dtype=np.float64) * 2 + 1, requires_grad=True)
    for training in (True, False):
        bn = nn.BatchNorm2d(3, affine=True)
        bn.running_mean, bn.running_var = np.array([0.5, -1, 2.0]), np.array([2.0, 0.5, 3.0])
        bn.weight.data = np.array([1.5, 0.5, 2.0])
        bn.bias.data = np.array([0.1, 0.2, -0.3])
        bn.train(training)
        gradcheck(lambda a, g, o: _bn_with(bn, a, g, o), x, bn.weight, bn.bias)


def _bn_with(bn, x, g, o):
    """Run bn with g, o swapped in (gradcheck passes float64 copies of the parameters)."""
    saved = bn.weight, bn.bias
    object.__setattr__(bn, "weight", g)
    object.__setattr__(bn, "bias", o)
    try:
        return bn(x)
    finally:
        object.__setattr__(bn, "weight", saved[0])
        object.__setattr__(bn, "bias", saved[1])


def test_scale_activations_and_pool_layers():
    x = Tensor(images(seed=10))
    np.testing.assert_allclose(nn.Scale(1 / 40)(x).data, x.data / 40, rtol=1e-6)
    np.testing.assert_array_equal(nn.SReLU()(x).data, np.maximum(x.data, -1))
    np.testing.assert_array_equal(nn.ReLU()(x).data, np.maximum(x.data, 0))
    np.testing.assert_allclose(nn.ELU()(x).data, np.where(x.data > 0, x.data, np.expm1(x.data)), rtol=1e-6)
    np.testing.assert_allclose(nn.GlobalAvgPool()(x).data, x.data.mean(axis=(1, 2)), rtol=1e-6)
    assert nn.AvgPool2d(3, 2, 1)(x).shape == (4, 3, 3, 3)


@pytest.mark.parametrize("fused", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("affine", [False, True])
def test_bn_inference_is_the_training_formula(affine, fused):
    """Eval mode with stored statistics equal to the batch's own gives the training output: bit for
    bit with ops/norm.py's training op (one formula, y = g·(x − μ)·(1/σ) + o, in both paths; float32,
    the buffers' dtype), to a few float32 roundings with the fused kernel (float64 statistics,
    (x − μ)·(g/σ) + o)."""
    dtype = np.float32
    rng = np.random.default_rng(4)
    bn = nn.BatchNorm2d(5, affine=affine)
    for p in bn.parameters():
        p.data = (p.data + rng.standard_normal(5)).astype(dtype)
    x = Tensor((rng.standard_normal((3, 4, 4, 5)) * 3 + 1).astype(dtype))
    with kernels.settings(fused_bn=fused):
        train_out = bn.train()(x).data              # the first batch sets the moving averages exactly
    if fused:
        np.testing.assert_allclose(bn.eval()(x).data, train_out, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(bn.eval()(x).data, train_out)


# ----- frozen BN: fixed statistics (wrn(input_norm="fixed")'s input_bn) ---------------------------
def frozen_bn(mean=(10.0, -2.0, 0.5), var=(4.0, 0.25, 9.0)):
    bn = nn.BatchNorm2d(3, frozen=True)
    bn.set_statistics(np.array(mean), np.array(var))
    return bn


@pytest.mark.parametrize("training", [True, False])
def test_frozen_bn_normalises_with_its_statistics_and_keeps_them(training):
    bn = frozen_bn().train(training)
    before = bn.state_dict()
    x = images(n=5, seed=11) * 3 + 7  # batch statistics far from the stored ones
    expected = (x.astype(np.float64) - np.array([10.0, -2.0, 0.5])) / np.sqrt(np.array([4.0, 0.25, 9.0]) + 1e-5)
    np.testing.assert_allclose(bn(Tensor(x)).data, expected, rtol=1e-5, atol=1e-5)
    after = bn.state_dict()
    assert list(after) == list(before) and "fitted" in after
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    assert bn.parameters() == []


def test_frozen_bn_gradient_float64():
    """An affine map of x: dx = dout/sqrt(σ² + ε) — not batch norm's gradient, which would subtract
    the means of dout and dout·x̂ (a random upstream gradient tells them apart)."""
    x = Tensor(images(n=3, seed=12, dtype=np.float64) * 2 + 1, requires_grad=True)
    for training in (True, False):
        bn = frozen_bn().train(training)
        gradcheck(lambda a: bn(a), x)


def test_frozen_bn_without_statistics_refuses_to_run():
    bn = nn.BatchNorm2d(3, frozen=True)
    for training in (True, False):
        with pytest.raises(RuntimeError, match="no statistics yet.*fit_statistics"):
            bn.train(training)(Tensor(images()))
    with pytest.raises(RuntimeError, match="frozen"):
        nn.BatchNorm2d(3).set_statistics(np.zeros(3), np.ones(3))
    fitted = frozen_bn()  # the flag travels with the state
    again = nn.BatchNorm2d(3, frozen=True).load_state_dict(fitted.state_dict())
    np.testing.assert_array_equal(again(Tensor(images())).data, fitted(Tensor(images())).data)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_fit_statistics_are_numpys_per_channel_mean_and_biased_variance(dtype):
    rng = np.random.default_rng(13)
    x = (rng.integers(0, 256, (23, 5, 4, 3)) * np.array([1, 0.5, 0.1])).astype(dtype)
    bn = nn.BatchNorm2d(3, frozen=True)
    mean, var = bn.fit_statistics(x, chunk=4)  # 23 images in chunks of 4: a partial last chunk
    rows = x.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var, rows.var(0), rtol=1e-12)
    np.testing.assert_array_equal(bn.calib_mean, mean)
    np.testing.assert_array_equal(bn.calib_var, var)
    np.testing.assert_array_equal(bn.running_mean, mean.astype(np.float32))
    np.testing.assert_array_equal(bn.running_var, var.astype(np.float32))
    assert bool(bn.fitted)
