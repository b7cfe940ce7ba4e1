"""Forward/backward pairs of the non-convolution ops: gradient checks, kink conventions, errors."""
import numpy as np
import pytest

import tinybin as tb
import tinybin.functional as F
from tinybin.ops import norm
from tinybin.tensor import Function

rng = np.random.default_rng(0)


def away_from(x, kink, gap=0.05):
    """Move values within `gap` of a kink away from it: finite differences across a kink lie."""
    near = np.abs(x - kink) < gap
    x[near] = kink + np.where(x[near] >= kink, gap, -gap) * 2
    return x


def t64(shape, kink=None):
    x = rng.standard_normal(shape) * 1.5
    return tb.Tensor(away_from(x, kink) if kink is not None else x, requires_grad=True)


# ----- activations ---------------------------------------------------------------------------
@pytest.mark.parametrize("fn,kink", [(F.relu, 0.0), (F.srelu, -1.0), (lambda x: F.elu(x, alpha=0.7), 0.0),
                                     (F.elu, 0.0)])
def test_activation_gradients(fn, kink):
    tb.gradcheck(fn, t64((3, 4, 4, 2), kink))


def test_activation_values():
    x = np.array([-3.0, -1.0, -0.5, 0.0, 2.0])
    np.testing.assert_array_equal(F.relu(x).data, [0, 0, 0, 0, 2])
    np.testing.assert_array_equal(F.srelu(x).data, [-1, -1, -0.5, 0, 2])
    np.testing.assert_allclose(F.elu(x, alpha=2.0).data, [2 * np.expm1(-3), 2 * np.expm1(-1), 2 * np.expm1(-0.5), 0, 2])


@pytest.mark.parametrize("fn,at,expected", [
    (F.relu, 0.0, 0.0),                       # d/dx max(0,x) at 0 := 0
    (F.srelu, -1.0, 0.0),                     # d/dx max(-1,x) at -1 := 0
    (lambda x: F.elu(x, alpha=0.5), 0.0, 0.5),  # ELU at 0 := alpha·exp(0) = alpha
    (F.srelu, -0.999, 1.0),
])
def test_derivative_at_kink_is_pinned(fn, at, expected):
    x = tb.Tensor(np.array([at]), requires_grad=True)
    fn(x).backward(np.array([1.0]))
    assert x.grad[0] == expected


def test_activations_keep_float32():
    x = tb.Tensor(rng.standard_normal((2, 3)).astype(np.float32))
    for fn in (F.relu, F.srelu, F.elu):
        assert fn(x).dtype == np.float32


# ----- binarize ------------------------------------------------------------------------------
def test_binarize_forward_values_including_zero():
    w = np.array([-2.0, -1e-9, 0.0, 1e-9, 3.0])
    out = F.binarize(tb.Tensor(w), multiplier=0.25).data
    np.testing.assert_array_equal(out, [-0.25, -0.25, 0.25, 0.25, 0.25])   # sign(0) = +1


def test_binarize_gradient_is_identity_and_unscaled():
    w = tb.Tensor(rng.standard_normal((3, 3, 4, 5)), requires_grad=True)
    G = rng.standard_normal(w.shape)
    F.binarize(w, multiplier=0.03).backward(G)
    np.testing.assert_array_equal(w.grad, G)   # not 0.03 * G: P1's unscaled straight-through gradient


def test_binarize_latent_gradient_equals_gradient_wrt_binarized_weight():
    w = tb.Tensor(rng.standard_normal((6, 4)), requires_grad=True)
    x = tb.Tensor(rng.standard_normal((5, 6)))
    c = np.sqrt(2 / 6)
    wb = F.binarize(w, c).retain_grad()
    (x @ wb).backward(rng.standard_normal((5, 4)))
    np.testing.assert_array_equal(w.grad, wb.grad)


# ----- batch norm ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3, 3, 5), (6, 3)])
@pytest.mark.parametrize("affine", ["none", "weight", "bias", "both"])
def test_batch_norm_gradients(shape, affine):
    C = shape[-1]
    x = t64(shape)
    w = tb.Tensor(rng.uniform(0.5, 1.5, C), requires_grad=True) if affine in ("weight", "both") else None
    b = tb.Tensor(rng.standard_normal(C), requires_grad=True) if affine in ("bias", "both") else None
    tb.gradcheck(lambda x, w, b: F.batch_norm(x, w, b), x, w, b)


@pytest.mark.parametrize("with_bias", [False, True])
def test_mean_only_batch_norm(with_bias):
    x = t64((4, 2, 2, 3))
    b = tb.Tensor(rng.standard_normal(3), requires_grad=True) if with_bias else None
    tb.gradcheck(lambda x, b: F.batch_norm(x, bias=b, mean_only=True), x, b)
    y = F.batch_norm(x, mean_only=True).data
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=(0, 1, 2)), x.data.std(axis=(0, 1, 2)))   # no division


def test_batch_norm_statistics_are_per_channel_and_biased():
    x = rng.standard_normal((8, 4, 4, 3)) * [1, 5, 0.1] + [0, 10, -3]
    y, (mean, var) = F.batch_norm(tb.Tensor(x), eps=0.0, return_stats=True)
    np.testing.assert_allclose(mean, x.reshape(-1, 3).mean(0))
    np.testing.assert_allclose(var, x.reshape(-1, 3).var(0))           # 1/rows, not 1/(rows - 1)
    np.testing.assert_allclose(y.data.reshape(-1, 3).mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(y.data.reshape(-1, 3).std(0), 1, rtol=1e-10)


def _wrong_bn_backward(dout, cache):
    """A classic mistake: drops the path through the variance (the x̂·mean(dx̂·x̂) term)."""
    xhat, inv_std = cache.xhat, cache.inv_std
    d = dout.reshape(xhat.shape)
    dx = (d - d.mean(axis=0)) * inv_std
    return dx.reshape(dout.shape), None, None


def test_sum_upstream_would_hide_a_wrong_batch_norm_backward():
    Wrong = Function.from_pair("WrongBN", lambda x, w, b: norm.batch_norm_forward(x, w, b), _wrong_bn_backward)
    x = t64((4, 3, 3, 2))
    fn = lambda x: Wrong.apply(x, None, None)  # noqa: E731
    ones = np.ones(x.shape)
    assert tb.gradcheck(fn, x, dout=ones).ok            # .sum(): the wrong backward passes ...
    with pytest.raises(tb.GradcheckError, match="FAILED"):
        tb.gradcheck(fn, x)                              # ... a random upstream gradient catches it


def test_batch_norm_bad_input():
    with pytest.raises(ValueError, match=r"\(2, 3, 4\)"):
        F.batch_norm(tb.Tensor(np.ones((2, 3, 4))))
    with pytest.raises(ValueError, match=r"weight has shape \(4,\), expected \(3,\)"):
        F.batch_norm(tb.Tensor(np.ones((2, 2, 2, 3))), weight=tb.Tensor(np.ones(4)))


# ----- loss, scale, shortcut -----------------------------------------------------------------
def test_cross_entropy_gradient_and_value():
    logits = t64((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    tb.gradcheck(lambda z: F.cross_entropy(z, labels), logits)
    z = logits.data
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -np.log(p[np.arange(5), labels]).mean()
    assert F.cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    z = tb.Tensor(np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]], np.float32), requires_grad=True)
    loss = F.cross_entropy(z, np.array([1, 1]))
    assert loss.item() == pytest.approx(1e4 / 2, rel=1e-6)   # first row: −log softmax = 1e4
    loss.backward()
    assert np.all(np.isfinite(z.grad))


@pytest.mark.parametrize("labels,match", [
    (np.array([0.0, 1.0]), "must be integers"),
    (np.array([0, 1, 2]), r"labels have shape \(3,\), expected \(2,\)"),
    (np.array([0, 4]), r"\[0, 3\)"),
])
def test_cross_entropy_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        F.cross_entropy(tb.Tensor(np.zeros((2, 3))), labels)


def test_scale_gradient_and_temperature_identity():
    x = t64((2, 3, 3, 4))
    tb.gradcheck(lambda x: F.scale(x, 1 / 40), x)
    T = 7.0   # scale before GAP equals softmax temperature: GAP is linear
    a = F.global_avg_pool(F.scale(x, 1 / T)).data
    b = F.global_avg_pool(x).data / T
    np.testing.assert_allclose(a, b, rtol=1e-13)


def test_pad_channels():
    x = t64((2, 3, 3, 4))
    tb.gradcheck(lambda x: F.pad_channels(x, 4), x)
    y = F.pad_channels(x, 4).data
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_array_equal(y[..., :4], x.data)    # old channels first
    assert not y[..., 4:].any()


# ----- gradcheck itself ----------------------------------------------------------------------
def test_gradcheck_reports_each_input_and_samples_large_ones():
    a = t64((30, 30))
    b = tb.Tensor(rng.standard_normal(30), requires_grad=True)
    rep = tb.gradcheck(lambda a, b: a * b, a, b, max_elements=50)
    assert [r.index for r in rep] == [0, 1] and rep.ok
    assert rep[0].checked == 50 and rep[1].checked == 30
    assert rep[0].max_rel_error < 1e-5


def test_gradcheck_catches_a_scaled_gradient():
    Bad = Function.from_pair("Bad", lambda x: (2 * x, None), lambda d, c: 2.2 * d)
    rep = tb.gradcheck(lambda x: Bad.apply(x), t64((3,)), raise_exception=False)
    assert not rep.ok and rep[0].max_rel_error > 0.01
    with pytest.raises(tb.GradcheckError, match=r"input 0 \(3,\): FAILED"):
        tb.gradcheck(lambda x: Bad.apply(x), t64((3,)))


@pytest.mark.parametrize("fn", [F.relu, F.srelu, F.elu], ids=["relu", "srelu", "elu"])
def test_activations_save_only_their_output(fn):
    """The backward reads the derivative off the output, which the next layer keeps anyway: no
    mask or second array is saved."""
    x = tb.Tensor(np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32), requires_grad=True)
    y = fn(x)
    cache = y._node.ctx.cache
    saved = [a for a in (cache if isinstance(cache, tuple) else (cache,)) if isinstance(a, np.ndarray)]
    assert len(saved) == 1 and saved[0] is y.data
