"""F.batch_norm_act (ops/norm_act.py, the fused BN (+ ReLU) kernels as an op) and its use in
training: it equals F.relu(F.batch_norm(...)) and central differences, and a WRN with it trains,
keeps moving averages and recalibrates as the unfused path does."""
import numpy as np
import pytest

import tinybin.functional as F
from tinybin import Tensor, kernels, nn
from tinybin.models import wrn
from tinybin.ops import norm_act
from tinybin.optim import SGD
from tinybin.tensor import _topological_order
from tinybin.train import recalibrate_bn, train_step

from conftest import bn_inputs as inputs
from conftest import numerical_grad, rel_error


def leaves(x, weight, bias):
    t = [Tensor(a.copy(), requires_grad=True) if a is not None else None for a in (x, weight, bias)]
    return t


@pytest.mark.parametrize("reference", [False, True], ids=["numba", "reference"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (40, 7)], ids=["nhwc", "2d"])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_fused_op_equals_batch_norm_then_relu(relu, affine, shape, reference):
    rng, x, weight, bias = inputs(0, shape, affine)
    dout = rng.standard_normal(shape)
    fx, fw, fb = leaves(x, weight, bias)
    ux, uw, ub = leaves(x, weight, bias)
    with kernels.settings(reference=reference):
        y, (mean, var) = F.batch_norm_act(fx, fw, fb, eps=1e-5, relu=relu, return_stats=True)
        y.backward(dout)
    z, (mean_u, var_u) = F.batch_norm(ux, uw, ub, eps=1e-5, return_stats=True)
    (F.relu(z) if relu else z).backward(dout)
    y_u = np.maximum(z.data, 0) if relu else z.data
    assert y.dtype == np.float64 and y.shape == shape
    np.testing.assert_allclose(y.data, y_u, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fx.grad, ux.grad, rtol=0, atol=1e-12)
    np.testing.assert_allclose(mean, mean_u, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, var_u, rtol=1e-12, atol=1e-12)
    if affine:
        np.testing.assert_allclose(fw.grad, uw.grad, rtol=0, atol=1e-12)
        np.testing.assert_allclose(fb.grad, ub.grad, rtol=0, atol=1e-12)
    if relu:
        assert (y.data == 0).any() and (y.data > 0).any()      # the ReLU cuts somewhere


@pytest.mark.parametrize("relu", [True, False])
def test_fused_op_gradcheck_float64(relu):
    rng, x, weight, bias = inputs(1, (2, 3, 3, 4))
    dout = rng.standard_normal(x.shape)

    def f():
        return F.batch_norm_act(Tensor(x), Tensor(weight), Tensor(bias), relu=relu).data
    y = f()
    assert np.all(np.abs(y[y != 0]) > 1e-4)                 # away from the ReLU kink
    tx, tw, tb = leaves(x, weight, bias)
    F.batch_norm_act(tx, tw, tb, relu=relu).backward(dout)
    assert rel_error(tx.grad, numerical_grad(f, x, dout, eps=1e-5)) < 1e-6
    assert rel_error(tw.grad, numerical_grad(f, weight, dout, eps=1e-5)) < 1e-6
    assert rel_error(tb.grad, numerical_grad(f, bias, dout, eps=1e-5)) < 1e-6


def test_fused_op_checks_its_inputs():
    with pytest.raises(ValueError, match="expected"):
        F.batch_norm_act(Tensor(np.zeros((2, 3, 3, 4))), Tensor(np.ones(3)))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        F.batch_norm_act(Tensor(np.zeros((2, 3, 4))))


def float64_model(variant):
    model = wrn(8, 1, variant=variant, rng=0)
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def ops_in_graph(t):
    names = [node.fn.__name__ for node in _topological_order(t._node)]
    return {k: names.count(k) for k in ("BatchNormAct", "BatchNorm", "ReLU")}


def two_steps(variant, fused, x, y):
    """Two SGD steps; per step (loss, {name: grad}, the ops in the graph); and the final buffers."""
    model = float64_model(variant)
    opt = SGD(model.parameters(), lr=0.1)
    steps = []

    def record(model, logits, loss):
        steps.append((float(loss.data), {n: p.grad.copy() for n, p in model.named_parameters()}, seen[-1]))
    seen = []
    model.register_forward_hook(lambda m, inp, out: seen.append(ops_in_graph(out)))
    with kernels.settings(fused_bn=fused):
        for i in range(2):
            train_step(model, opt, x[4 * i:4 * i + 4], y[4 * i:4 * i + 4], lr=0.1, after_backward=record)
    return steps, {n: b.copy() for n, b in model.named_buffers()}


@pytest.mark.parametrize("variant", ["baseline1", "baseline2"])
def test_wrn_training_step_fused_equals_unfused_float64(variant):
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 255, (8, 8, 8, 3)), rng.integers(0, 10, 8)
    fused, buffers_f = two_steps(variant, True, x, y)
    plain, buffers_p = two_steps(variant, False, x, y)
    # 9 BN layers: input_bn, 7 unit BNs (each with a ReLU), head.final
    assert fused[0][2] == {"BatchNormAct": 9, "BatchNorm": 0, "ReLU": 0}
    assert plain[0][2] == {"BatchNormAct": 0, "BatchNorm": 9, "ReLU": 7}
    for (loss_f, grads_f, _), (loss_p, grads_p, _) in zip(fused, plain):
        assert loss_f == pytest.approx(loss_p, rel=1e-12)
        assert grads_f.keys() == grads_p.keys()
        for name in grads_f:
            np.testing.assert_allclose(grads_f[name], grads_p[name], rtol=1e-9, atol=1e-12, err_msg=name)
    assert buffers_f.keys() == buffers_p.keys()
    for name in buffers_f:
        np.testing.assert_allclose(buffers_f[name], buffers_p[name], rtol=1e-6, atol=1e-6, err_msg=name)
    assert int(buffers_f["stage1.block0.unit_a.bn.moving_batches"]) == 2
    assert not np.allclose(buffers_f["stage1.block0.unit_a.bn.running_var"], 1)   # updated


@pytest.mark.parametrize("variant", ["baseline1", "baseline2"])
def test_recalibration_fused_equals_unfused(variant, monkeypatch):
    calls = []
    forward = norm_act.batch_norm_act_forward
    monkeypatch.setattr(norm_act, "batch_norm_act_forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    rng = np.random.default_rng(6)
    batches = [rng.uniform(0, 255, (4, 8, 8, 3)) for _ in range(3)]
    stats = []
    for fused in (True, False):
        model = float64_model(variant)
        with kernels.settings(fused_bn=fused):
            assert recalibrate_bn(model, batches) == 3
        stats.append({n: (bn.calib_mean, bn.calib_var, int(bn.calib_batches)) for n, bn in model.batch_norms()})
        assert all(int(bn.moving_batches) == 0 for _, bn in model.batch_norms())  # moving averages left alone
    assert len(calls) == 9 * 3                                # every BN of every batch went through the fused op
    for name, (mean, var, count) in stats[0].items():
        mean_p, var_p, count_p = stats[1][name]
        assert count == count_p == 3
        np.testing.assert_allclose(mean, mean_p, rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(var, var_p, rtol=1e-10, atol=1e-12, err_msg=name)


def test_float32_training_is_close_and_stays_float32():
    rng = np.random.default_rng(7)
    x = rng.uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    out = {}
    for fused in (True, False):
        model = wrn(8, 1, variant="baseline1", rng=0)
        with kernels.settings(fused_bn=fused):
            logits = model(x)
            logits.backward(np.ones_like(logits.data) / 40)
        out[fused] = logits.data, model.head.unit.bn.weight.grad, model.stage2.block0.unit_b.bn.running_var
    for a, b in zip(out[True], out[False]):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_hooks_see_the_bn_output_and_the_relu_apart():
    """A hook on a unit's BN or ReLU keeps the unfused path, so it sees the BN output before the ReLU."""
    model = wrn(8, 1, variant="baseline2", rng=0)
    unit = model.stage1.block0.unit_b
    seen = {}
    unit.bn.register_forward_hook(lambda m, inp, out: seen.setdefault("bn", out.data.copy()))
    unit.register_forward_hook(lambda m, inp, out: seen.setdefault("unit", out.data.copy()))
    model(np.random.default_rng(8).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32))
    assert (seen["bn"] < 0).any()
    np.testing.assert_array_equal(seen["unit"], np.maximum(seen["bn"], 0))


def test_eval_mode_relu_is_applied():
    bn = nn.BatchNorm2d(3, affine=True).eval()
    x = Tensor(np.random.default_rng(9).standard_normal((2, 4, 4, 3)).astype(np.float32))
    np.testing.assert_array_equal(bn(x, relu=True).data, np.maximum(bn(x).data, 0))
