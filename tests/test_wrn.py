"""tinybin.models.wrn: structure of P2 §III.A (Figs. 2, 4), the six variants of §IV, whole-network gradients."""
import warnings

import numpy as np
import pytest

import tinybin.functional as F
from tinybin import Tensor, gradcheck, nn
from tinybin.models import VARIANTS, conv_weight_count, default_temperature, wrn
from tinybin.models.wrn import uses_temperature

ALL = list(VARIANTS)


def tiny(variant, bits=32, depth=8, **kw):
    kw.setdefault("temperature", 40.0 if uses_temperature(variant) else None)
    return wrn(depth, 1, variant=variant, bits=bits, rng=0, **kw)


def pixels(n, size=8, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype(dtype)


def test_variant_names_are_the_papers_six():
    assert ALL == ["baseline1", "baseline2", "final-bn", "srelu", "elu", "mean-bn"]


@pytest.mark.parametrize("variant", ALL)
@pytest.mark.parametrize("bits", [1, 32])
def test_every_variant_builds_and_runs_forward(variant, bits):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = wrn(20, 1, variant=variant, bits=bits, rng=0)
    out = model(pixels(2, 32))
    assert out.shape == (2, 10) and out.dtype == np.float32
    assert np.isfinite(out.data).all()
    convs = model.convs()
    assert len(convs) == 20
    assert all(c.bits == bits for _, c in convs)
    model.eval()
    assert model(pixels(2, 32)).shape == (2, 10)


def test_conv_weight_counts():
    assert conv_weight_count(wrn(20, 4, bits=1, rng=0)) == 4_280_512
    assert conv_weight_count(wrn(20, 10, bits=1, rng=0)) == 26_737_120


def test_structure_names_channels_and_shapes():
    model = wrn(20, 4, variant="baseline2", rng=0)
    names = [n for n, _ in model.convs()]
    assert names[0] == "stem" and names[-1] == "head.conv"
    assert "stage1.block0.conv_a" in names and "stage3.block2.conv_b" in names
    widths = {n: (c.c_in, c.c_out, c.stride) for n, c in model.convs()}
    assert widths["stem"] == (3, 64, 1)
    assert widths["stage1.block0.conv_a"] == (64, 64, 1)
    assert widths["stage2.block0.conv_a"] == (64, 128, 2)
    assert widths["stage3.block0.conv_a"] == (128, 256, 2)
    assert widths["head.conv"] == (256, 10, 1)
    assert model.head.conv.k == 1
    assert model.stage2.block0.shortcut is not None and model.stage2.block1.shortcut is None
    assert model.stage1.block0.shortcut is None
    # BN layers: the input BN, 18 block units, the head unit, the final BN (21, as in the authors' Keras model)
    assert len(model.batch_norms()) == 21
    first = model.batch_norms()[0]
    assert first[0] == "input_bn" and first[1].affine
    assert not any(bn.affine for _, bn in model.batch_norms()[1:])


@pytest.mark.parametrize("variant,n_bn,final", [("baseline1", 9, nn.BatchNorm2d), ("baseline2", 9, nn.BatchNorm2d),
                                                 ("final-bn", 2, nn.BatchNorm2d), ("srelu", 1, nn.Scale),
                                                 ("elu", 1, nn.Scale), ("mean-bn", 2, nn.Sequential)])
def test_variant_table(variant, n_bn, final):
    """WRN-8-1: the input BN, 6 block units, the head unit, the final layer."""
    model = tiny(variant)
    bns = model.batch_norms()
    assert len(bns) == n_bn
    assert isinstance(model.head.final, final)
    acts = {type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.SReLU, nn.ELU))}
    assert acts == {{"baseline1": nn.ReLU, "baseline2": nn.ReLU, "elu": nn.ELU}.get(variant, nn.SReLU)}
    if variant == "baseline1":
        assert all(bn.affine for _, bn in bns)
    if variant == "mean-bn":
        assert model.head.final.bn.mean_only and model.head.final.parameters() == []
        assert model.head.final.scale.c == pytest.approx(1 / 40)
    if final is nn.Scale:
        assert model.head.final.c == pytest.approx(1 / 40)


def test_downsampling_shortcut_is_avg_pool_plus_zero_channels():
    model = tiny("srelu")
    block = model.stage2.block0
    x = Tensor(pixels(2, 8, seed=1)[..., :1].repeat(16, axis=-1) / 100)
    out = block.shortcut(x).data
    assert out.shape == (2, 4, 4, 32)
    np.testing.assert_array_equal(out[..., 16:], 0)
    np.testing.assert_allclose(out[..., :16], F.avg_pool2d(x, 3, 2, 1).data)
    # corner: the 2×2 cells inside the image, padding excluded from the average
    np.testing.assert_allclose(out[:, 0, 0, 0], x.data[:, :2, :2, 0].mean(axis=(1, 2)), rtol=1e-6)


def test_tf_same_padding():
    sym, tf = tiny("baseline2", padding="symmetric"), tiny("baseline2", padding="tf-same")
    assert sym.stage2.block0.conv_a.padding == 1 and sym.stage2.block0.shortcut.pool.padding == 1
    assert tf.stage2.block0.conv_a.padding == (0, 1, 0, 1)
    assert tf.stage2.block0.shortcut.pool.padding == (0, 1, 0, 1)
    assert tf.stage2.block0.conv_b.padding == 1 and tf.stem.padding == 1
    assert tf(pixels(2, 32)).shape == (2, 10)


def test_bad_arguments():
    with pytest.raises(ValueError, match="6n\\+2"):
        wrn(depth=21)
    with pytest.raises(ValueError, match="baseline1, baseline2, final-bn, srelu, elu, mean-bn"):
        wrn(variant="no-bn")
    with pytest.raises(ValueError, match="bits"):
        wrn(bits=8)
    with pytest.raises(ValueError, match="temperature"):
        wrn(variant="baseline2", temperature=40)
    with pytest.raises(ValueError, match="padding"):
        wrn(padding="same")


def test_default_temperature_is_the_authors_and_says_so():
    assert default_temperature(1, 10) == 40 and default_temperature(32, 10) == 80
    assert default_temperature(1, 100) == 25 and default_temperature(32, 100) == 25
    for bits, classes, T in [(1, 10, 40), (32, 10, 80), (1, 100, 25)]:
        with pytest.warns(UserWarning, match=f"T={T}"):
            model = wrn(8, 1, num_classes=classes, variant="srelu", bits=bits, rng=0)
        assert model.config["temperature"] == T
        assert model.head.final.c == pytest.approx(1 / T)


def test_same_seed_same_weights():
    a, b = tiny("srelu"), tiny("srelu")
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)


# ------------------------------------------------------------------------ whole-network gradients


def to_float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def numeric_check(model, x, dout, params, n_per_param=4, eps=1e-6, seed=0):
    """Central differences of sum(model(x)·dout) for a few elements of each listed Parameter
    and of the input x (float64, random upstream gradient); returns the worst relative error."""
    rng = np.random.default_rng(seed)

    def loss():
        return float((model(Tensor(x)).data * dout).sum())

    xt = Tensor(x.copy(), requires_grad=True)
    model.zero_grad()
    model(xt).backward(dout)
    worst = 0.0
    targets = [(p.data, p.grad) for p in params] + [(x, xt.grad)]
    for array, grad in targets:
        for _ in range(n_per_param):
            i = tuple(rng.integers(0, s) for s in array.shape)
            old = array[i]
            array[i] = old + eps
            up = loss()
            array[i] = old - eps
            down = loss()
            array[i] = old
            num = (up - down) / (2 * eps)
            worst = max(worst, abs(num - grad[i]) / max(1e-8, abs(num) + abs(grad[i])))
    return worst


@pytest.mark.parametrize("variant", ALL)
def test_gradient_of_whole_tiny_wrn_float64_32_bit(variant):
    """WRN-8-1 on four 8×8 images, every variant, in training mode (batch statistics)."""
    model = to_float64(tiny(variant, bits=32))
    x = pixels(4, 8, seed=2, dtype=np.float64)
    dout = np.random.default_rng(3).normal(size=(4, 10))
    assert numeric_check(model, x, dout, model.parameters()) < 1e-5


@pytest.mark.parametrize("variant", ALL)
def test_gradient_of_whole_tiny_wrn_1_bit(variant):
    """1-bit: finite differences for the input and the float parameters (BN g, o); for every
    conv, the latent gradient equals the gradient w.r.t. its binarized weight, checked against
    the same net in 32 bits holding W_b = c·sign(W)."""
    one = to_float64(tiny(variant, bits=1))
    x = pixels(4, 8, seed=4, dtype=np.float64)
    dout = np.random.default_rng(5).normal(size=(4, 10))
    floats = [p for n, p in one.named_parameters() if not n.endswith("conv_a.weight") and
              not n.endswith("conv_b.weight") and n not in ("stem.weight", "head.conv.weight")]
    assert numeric_check(one, x, dout, floats) < 1e-5

    full = to_float64(tiny(variant, bits=32))
    full.load_state_dict(one.state_dict())
    for (_, c1), (_, c32) in zip(one.convs(), full.convs()):
        c32.weight.data = c1.effective_weight().data.copy()
    one.zero_grad(), full.zero_grad()
    out1, out32 = one(Tensor(x)), full(Tensor(x))
    np.testing.assert_allclose(out1.data, out32.data, rtol=1e-12, atol=1e-12)
    out1.backward(dout)
    out32.backward(dout)
    for (name, c1), (_, c32) in zip(one.convs(), full.convs()):
        np.testing.assert_allclose(c1.weight.grad, c32.weight.grad, rtol=1e-10, atol=1e-12, err_msg=name)


def test_input_gradient_with_tinybin_gradcheck_eval_mode():
    model = to_float64(tiny("baseline1", bits=1)).eval()
    for _, bn in model.batch_norms():  # non-trivial stored statistics
        bn.running_mean = np.linspace(-0.5, 0.5, bn.num_channels)
        bn.running_var = np.linspace(0.5, 2.0, bn.num_channels)
    model.input_bn.running_mean, model.input_bn.running_var = np.full(3, 120.0), np.full(3, 4000.0)
    x = Tensor(pixels(2, 8, seed=6, dtype=np.float64), requires_grad=True)
    gradcheck(lambda a: model(a), x)


# ------------------------------------------------------------------------ probes and persistence


def test_head_output_gradient_by_module_name():
    """srelu: logits = GAP(z)/T, so with the mean loss dL/dz = (softmax − onehot)/(N·T·H·W).
    The model has no probe code: a forward hook on `head.conv` keeps z and h."""
    model = tiny("srelu", temperature=40.0)
    kept = {}
    remove = model.head.conv.register_forward_hook(lambda m, h, z: kept.update(h=h.retain_grad(), z=z.retain_grad()))
    x, y = pixels(3, 8, seed=7), np.array([1, 4, 9])
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    z = kept["z"]
    assert z.shape == (3, 2, 2, 10) and kept["h"].shape == (3, 2, 2, 64)
    p = np.exp(logits.data - logits.data.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(3), y] -= 1
    expect = np.broadcast_to((p / (3 * 40 * 4))[:, None, None, :], z.shape)
    np.testing.assert_allclose(z.grad, expect, rtol=1e-4, atol=1e-9)
    assert kept["h"].grad is not None
    remove()
    model(x)
    assert kept["z"] is z  # not replaced once the hook is removed


def test_save_load_identical_logits(tmp_path):
    model = tiny("baseline2", bits=1)
    for _ in range(2):
        model(pixels(4, 8, seed=8))  # move the moving averages
    model.eval()
    x = pixels(3, 8, seed=9)
    before = model(x).data
    model.save(tmp_path / "w.npz")
    other = wrn(8, 1, variant="baseline2", bits=1, rng=123)
    other.load(tmp_path / "w.npz")
    other.eval()
    np.testing.assert_array_equal(other(x).data, before)


def test_mean_bn_is_the_papers_variant_6_scale_then_mean_only_bn():
    """P2 variant 6: sReLU units, ×1/T, then a mean-only BN without bias: logits = GAP(meanonlyBN(z/T))."""
    model = tiny("mean-bn", temperature=25.0)
    head = [name for name, _ in model.head.named_modules()][1:]
    assert head == ["unit", "unit.act", "conv", "final", "final.scale", "final.bn", "pool"]
    assert model.head.final.bn.bias is None and model.head.final.bn.weight is None
    assert {type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.SReLU, nn.ELU))} == {nn.SReLU}
    seen = {}
    model.head.conv.register_forward_hook(lambda m, i, z: seen.update(z=z.data))
    logits = model(pixels(4)).data
    zt = seen["z"] / 25.0                                     # N, H, W, C
    expected = (zt - zt.mean(axis=(0, 1, 2))).mean(axis=(1, 2))
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    with pytest.warns(UserWarning, match="T=40"):                # default T as for srelu
        assert wrn(8, 1, variant="mean-bn", bits=1, rng=0).config["temperature"] == 40


def test_mean_bn_without_the_division_is_only_an_ablation():
    from tinybin.models.wrn import ABLATIONS, mean_bn_final
    assert "mean-bn-no-scale" not in VARIANTS and ABLATIONS["mean-bn-no-scale"][1] is mean_bn_final
    model = wrn(8, 1, variant="mean-bn-no-scale", bits=1, rng=0)
    assert isinstance(model.head.final, nn.BatchNorm2d) and model.head.final.mean_only
    assert "division" in mean_bn_final.__doc__
    with pytest.raises(ValueError, match="no scale layer"):
        wrn(8, 1, variant="mean-bn-no-scale", temperature=40)


def test_a_new_variant_is_one_table_row(monkeypatch):
    from tinybin.models.wrn import elu_unit
    from tinybin.train import TrainConfig

    def half_scale_final(channels, temperature):        # a researcher's own final layer
        return nn.Sequential(scale=nn.Scale(0.5 / temperature))

    monkeypatch.setitem(VARIANTS, "elu-half", (elu_unit, half_scale_final))
    model = wrn(8, 1, variant="elu-half", bits=1, temperature=10.0, rng=0)
    assert model.head.final.scale.c == pytest.approx(0.05) and isinstance(model.head.unit.act, nn.ELU)
    assert uses_temperature("elu-half") and model(pixels(2)).shape == (2, 10)
    TrainConfig(variant="elu-half").validate()


def test_unknown_variant_unit_or_final_is_a_loud_error(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown variant 'bn-free'; valid: baseline1, .*mean-bn-no-scale"):
        wrn(variant="bn-free")
    monkeypatch.setitem(VARIANTS, "typo", ("srelu", "scale"))   # names instead of factories
    with pytest.raises(ValueError, match="variant 'typo': its unit 'srelu' is not a factory"):
        wrn(8, 1, variant="typo", rng=0)


def test_input_norm_fixed_has_no_input_bn_parameters():
    """input_norm="fixed": the same module name, a frozen BN without g, o, statistics from images;
    an unknown value names the valid ones."""
    learned, fixed = wrn(8, 1, rng=0), wrn(8, 1, input_norm="fixed", rng=0)
    assert learned.config["input_norm"] == "bn" and fixed.config["input_norm"] == "fixed"
    assert fixed.input_bn.frozen and not learned.input_bn.frozen
    assert not any(name.startswith("input_bn.") for name, _ in fixed.named_parameters())
    assert learned.num_parameters() - fixed.num_parameters() == 6   # g and o of 3 channels
    assert [n for n, _ in fixed.batch_norms()] == [n for n, _ in learned.batch_norms()]
    x = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(RuntimeError, match="fit_statistics"):
        fixed(x)
    fixed.input_bn.fit_statistics(x)
    assert fixed(x).shape == (4, 10)
    with pytest.raises(ValueError, match="input_norm must be one of bn, fixed, got 'nope'"):
        wrn(8, 1, input_norm="nope")
