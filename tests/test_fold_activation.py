"""An activation folded into the conv that reads it (F.conv2d's floor; models.wrn.Unit.into):
the same numbers as the two ops, bit for bit, on every kind of layer, and the same gradients
as central differences; the direct kernels mask dx as they store it; hooks keep the two apart."""
import numpy as np
import pytest

from tinybin import functional as F
from tinybin import kernels
from tinybin.kernels import direct_numba, direct_ref
from tinybin.models import wrn
from tinybin.ops.conv import conv2d_backward, conv2d_forward
from tinybin.tensor import Tensor

from conftest import numerical_grad, rel_error

# (N, H, W, C, OC, stride, padding, dtype): the algorithms a layer can get -- direct stride 1
# (masked dx; an output width that is not a multiple of the pixel block), direct stride 2 (dx by
# col2im, masked after), Winograd (64 channels), im2col (float64 and narrow outputs)
LAYERS = [
    (3, 8, 8, 16, 16, 1, 1, np.float32),
    (2, 7, 5, 16, 32, 1, (1, 1, 0, 2), np.float32),
    (3, 8, 8, 16, 32, 2, 1, np.float32),
    (2, 8, 8, 64, 64, 1, 1, np.float32),
    (2, 6, 6, 16, 10, 1, 1, np.float32),
    (2, 6, 7, 16, 16, 1, 1, np.float64),
]


def two_ops(x, w, stride, padding, floor, dout):
    """conv(act(x)) as separate ops: out, dx, dw."""
    xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    act = F.srelu(xt) if floor == -1 else F.relu(xt)
    out = F.conv2d(act, wt, stride=stride, padding=padding)
    out.backward(dout)
    return out.data, xt.grad, wt.grad


def one_op(x, w, stride, padding, floor, dout):
    xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    out = F.conv2d(xt, wt, stride=stride, padding=padding, floor=floor)
    out.backward(dout)
    return out.data, xt.grad, wt.grad


@pytest.mark.parametrize("reference", [False, True])
@pytest.mark.parametrize("floor", [-1.0, 0.0])
@pytest.mark.parametrize("layer", LAYERS)
def test_folded_activation_is_the_two_ops_bit_for_bit(layer, floor, reference):
    N, H, W, C, OC, stride, padding, dtype = layer
    rng = np.random.default_rng(C + OC + H)
    x = (rng.standard_normal((N, H, W, C)) * 1.5).astype(dtype)
    x[0, 0, :2] = floor                                   # at the kink: the mask is 0 there
    w = np.sign(rng.standard_normal((3, 3, C, OC))).astype(dtype)
    out_shape = conv2d_forward(x, w, stride, padding)[0].shape
    dout = rng.standard_normal(out_shape).astype(dtype)
    with kernels.settings(reference=reference):
        expected = two_ops(x, w, stride, padding, floor, dout)
        got = one_op(x, w, stride, padding, floor, dout)
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype and np.array_equal(e, g)
    assert np.all(got[1][0, 0, :2] == 0)


def test_the_direct_kernels_mask_as_they_store():
    """grad_input with keep = dx · (keep > floor), fast and reference, whole and cut pixel blocks."""
    rng = np.random.default_rng(0)
    for W in (8, 5, 11):
        w = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
        dout = rng.standard_normal((2, 6, W, 32)).astype(np.float32)
        keep = np.maximum(rng.standard_normal((2, 6, W, 16)), -1).astype(np.float32)
        for module in (direct_numba, direct_ref):
            plain = module.grad_input(dout, w, (1, 1, 1, 1))
            masked = module.grad_input(dout, w, (1, 1, 1, 1), keep=keep, floor=-1.0)
            assert np.array_equal(masked, plain * (keep > -1))
            assert 0 < np.count_nonzero(masked == 0) < masked.size


def test_the_plan_says_which_input_gradients_mask():
    def masks(w_shape, stride):
        return kernels.conv_plan(w_shape, stride, (1, 1, 1, 1), np.float32).input_gradient.masks
    assert masks((3, 3, 16, 16), (1, 1))          # direct
    assert not masks((3, 3, 16, 32), (2, 2))      # direct forward, dx by col2im
    assert not masks((3, 3, 64, 64), (1, 1))      # Winograd


@pytest.mark.parametrize("layer", [(2, 5, 6, 16, 16, 1, 1), (2, 6, 6, 16, 32, 2, 1), (2, 5, 5, 4, 8, 1, 1)])
def test_folded_conv_gradients_match_central_differences(layer):
    """float64, the masking direct dx (first layer), col2im's then the mask (the other two)."""
    N, H, W, C, OC, stride, padding = layer
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, H, W, C))
    x[np.abs(x + 1) < 0.01] += 0.05                # away from the kink, where the derivative jumps
    w = rng.standard_normal((3, 3, C, OC)) / 12
    out, cache = conv2d_forward(x, w, stride, padding, floor=-1.0)
    assert cache.plan.input_gradient.masks == (layer[5] == 1 and C == 16)
    dout = rng.standard_normal(out.shape)
    dx, dw = conv2d_backward(dout, cache)
    f = lambda: conv2d_forward(x, w, stride, padding, floor=-1.0)[0]  # noqa: E731
    # piecewise linear: a step of 1e-4 that crosses no kink is exact but for rounding
    assert rel_error(dx, numerical_grad(f, x, dout, eps=1e-4)) < 1e-6
    assert rel_error(dw, numerical_grad(f, w, dout, eps=1e-4)) < 1e-6


def tiny_step(model, x, y):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    return logits.data, {name: p.grad.copy() for name, p in model.named_parameters()}


@pytest.mark.parametrize("variant", ["srelu", "baseline2"])
def test_a_wrn_folds_its_units_and_hooks_keep_them_apart(variant):
    """Same logits and gradients with the units folded as with every unit watched by a hook (which
    keeps it a separate op); the folded model's graph has no sReLU node."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (4, 16, 16, 3)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    folded = wrn(8, 1, variant=variant, rng=3, temperature=None if variant == "baseline2" else 40.0)
    watched = wrn(8, 1, variant=variant, rng=3, temperature=None if variant == "baseline2" else 40.0)
    seen = []
    for name, m in watched.named_modules():
        if name.endswith("unit_a") or name.endswith("unit_b") or name == "head.unit":
            m.register_forward_hook(lambda m, i, o: seen.append(o))
    logits_f, grads_f = tiny_step(folded, x, y)
    logits_w, grads_w = tiny_step(watched, x, y)
    assert len(seen) == 7                                 # 3 blocks' two units and the head's
    assert np.array_equal(logits_f, logits_w)
    for name in grads_w:
        assert np.array_equal(grads_f[name], grads_w[name]), name
