"""tinybin.optim: SGD in the papers' form, weight decay on conv weights only, schedules."""
import math

import numpy as np
import pytest

from tinybin.nn import Parameter
from tinybin.optim import SGD, Schedule, cosine_lr, warm_restart_lr


def test_sgd_momentum_and_weight_decay_by_formula():
    """v ← m·v − lr·(g + wd·W);  W ← W + v  (P2 §III.A), two steps with changing lr."""
    w0 = np.array([1.0, -2.0, 0.5], np.float32)
    p = Parameter(w0.copy(), decay=True)
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=5e-4)
    g1, g2 = np.array([0.3, -0.1, 2.0], np.float32), np.array([-1.0, 0.2, 0.0], np.float32)
    p.grad = g1
    opt.step()
    v1 = -0.1 * (g1 + 5e-4 * w0)
    w1 = w0 + v1
    np.testing.assert_allclose(p.data, w1, rtol=1e-6)
    p.grad = g2
    opt.step(lr=0.05)
    v2 = 0.9 * v1 - 0.05 * (g2 + 5e-4 * w1)
    np.testing.assert_allclose(p.data, w1 + v2, rtol=1e-6)
    np.testing.assert_array_equal(p.grad, g2)  # the gradient itself is not modified


def test_no_weight_decay_on_parameters_without_decay():
    bn_gain = Parameter(np.ones(3, np.float32), decay=False)
    bn_gain.grad = np.zeros(3, np.float32)
    SGD([bn_gain], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_array_equal(bn_gain.data, 1.0)
    conv = Parameter(np.ones(3, np.float32), decay=True)
    conv.grad = np.zeros(3, np.float32)
    SGD([conv], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(conv.data, 1 - 0.1 * 0.5)


def test_parameters_without_gradient_are_skipped():
    a, b = Parameter(np.ones(2, np.float32)), Parameter(np.ones(2, np.float32))
    a.grad = np.ones(2, np.float32)
    SGD([a, b], lr=1.0, weight_decay=0).step()
    np.testing.assert_array_equal(a.data, 0)
    np.testing.assert_array_equal(b.data, 1)


def test_state_dict_resume_continues_identically():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(4,)).astype(np.float32) for _ in range(4)]

    def run(split):
        p = Parameter(np.arange(4, dtype=np.float32))
        opt = SGD([p], lr=0.1)
        for i, g in enumerate(grads):
            if i == split:
                state, data = opt.state_dict(), p.data.copy()
                p = Parameter(data)
                opt = SGD([p], lr=99).load_state_dict(state)
            p.grad = g
            opt.step(lr=0.1 / (i + 1))
        return p.data

    np.testing.assert_array_equal(run(split=-1), run(split=2))


def test_sgd_follows_float64_parameters():
    p = Parameter(np.ones(2, np.float32))
    opt = SGD([p], lr=0.1)
    p.grad = np.ones(2, np.float32)
    opt.step()
    p.data = p.data.astype(np.float64)
    p.grad = np.ones(2)
    opt.step()
    assert p.data.dtype == np.float64


def test_cosine_schedule_values():
    total = 1000
    assert cosine_lr(0, total) == pytest.approx(0.1)
    assert cosine_lr(total // 2, total) == pytest.approx((0.1 + 1e-5) / 2)
    assert cosine_lr(total, total) == pytest.approx(1e-5)
    t = 123
    expect = 1e-5 + 0.5 * (0.1 - 1e-5) * (1 + math.cos(math.pi * t / total))
    assert cosine_lr(t, total) == pytest.approx(expect)
    lrs = [cosine_lr(s, total) for s in range(total)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))  # decreasing every batch


def test_warm_restarts_cycles_of_2_4_8_epochs():
    spe = 10  # steps per epoch
    starts = [0, 20, 60, 140]  # cycles of 2, 4, 8 epochs
    for s in starts:
        assert warm_restart_lr(s, spe) == pytest.approx(0.1)
    assert warm_restart_lr(19, spe) == pytest.approx(cosine_lr(19, 20))
    assert warm_restart_lr(20 + 20, spe) == pytest.approx((0.1 + 1e-5) / 2)  # middle of the 4-epoch cycle
    assert warm_restart_lr(59, spe) < 0.001


def test_schedule_object():
    s = Schedule("cosine", total_steps=100, steps_per_epoch=10)
    assert s(0) == pytest.approx(0.1) and s(100) == pytest.approx(1e-5)
    assert Schedule("restarts", 100, 10)(20) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="cosine"):
        Schedule("linear", 100, 10)
