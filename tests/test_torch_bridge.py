"""tinybin.torch: the WRN in PyTorch computes what tinybin computes; state goes both ways
(its trainer: test_torch_train.py).

Exactness: float64, "relative" means max |a − b| / max |b| over the whole tensor.
Needs PyTorch (pip install '.[torch]'); without it every test here skips with that reason.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install '.[torch]' runs these tests")

from tinybin.data import load_cifar10
from tinybin.models import wrn
from tinybin.models.wrn import PADDINGS, VARIANTS
from tinybin.optim import SGD
from tinybin.tensor import Tensor
from tinybin.torch import (
    binarize,
    from_torch,
    make_sgd,
    optimizer_state_from_torch,
    optimizer_state_to_torch,
    to_torch,
)
from tinybin.train import train_step

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "datasets" / "cifar-10-subset-python.tar.gz"
MAT = ROOT / "datasets" / "mcdonnell" / "CIFAR10_allparams.mat"


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def tb_layout(g):
    """A torch conv gradient (C_out, C_in, KH, KW) in tinybin's layout (KH, KW, C_in, C_out)."""
    g = g.detach().numpy()
    return g.transpose(2, 3, 1, 0) if g.ndim == 4 else g


@pytest.fixture(scope="module")
def test_images():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, (x, y) = load_cifar10(archive=ARCHIVE)
    return x, y


def small_model(variant, bits, padding, seed=0, dtype=np.float64):
    """WRN-8-1 with random latent weights and (where learned) random BN g and o."""
    rng = np.random.default_rng(seed + 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the authors' T for scale variants
        model = wrn(8, 1, variant=variant, bits=bits, padding=padding, rng=seed)
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    for _, bn in model.batch_norms():
        if bn.weight is not None:
            bn.weight.data = (1 + 0.3 * rng.standard_normal(bn.weight.shape)).astype(dtype)
        if bn.bias is not None:
            bn.bias.data = (0.3 * rng.standard_normal(bn.bias.shape)).astype(dtype)
    return model


def test_binarize_sign_zero_and_identity_gradient():
    """c·sign(W) with sign(0) = +1; the latent gradient is the upstream one, not ×c (a reference
    test: the true derivative of sign is 0, so finite differences cannot check a straight-through rule)."""
    c = 0.125
    w = torch.tensor([-2.0, -1e-30, 0.0, 1e-30, 3.0], dtype=torch.float64, requires_grad=True)
    out = binarize(w, c)
    np.testing.assert_array_equal(out.detach().numpy(), [-c, -c, c, c, c])
    dout = torch.tensor([0.3, -1.7, 2.0, 5.0, -0.25], dtype=torch.float64)
    out.backward(dout)
    np.testing.assert_array_equal(w.grad.numpy(), dout.numpy())


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize("bits", [1, 32])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_logits_and_latent_gradients_equal_tinybin(variant, bits, padding, test_images):
    """Training mode (batch statistics), 8 real test images, random upstream gradient: logits and
    the gradient of every parameter (conv latent weights, BN g and o) equal to 1e-10 relative."""
    x = test_images[0][:8].astype(np.float64)
    model = small_model(variant, bits, padding)
    net = to_torch(model)
    upstream = np.random.default_rng(1).standard_normal((8, 10))

    logits = model(x)
    (logits * Tensor(upstream)).sum().backward()
    tlogits = net(torch.from_numpy(x))
    (tlogits * torch.from_numpy(upstream)).sum().backward()

    assert tlogits.dtype == torch.float64
    assert rel(tlogits.detach().numpy(), logits.data) < 1e-10
    torch_params = dict(net.named_parameters())
    assert set(torch_params) == {name for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        assert rel(tb_layout(torch_params[name].grad), p.grad) < 1e-10, name
    # the moving averages that training-mode forward updates agree too
    tb_buffers, t_buffers = dict(model.named_buffers()), dict(net.named_buffers())
    for name, value in tb_buffers.items():
        if name.endswith("running_mean"):
            assert rel(t_buffers[name].numpy(), value) < 1e-6, name


@pytest.mark.parametrize("variant", ["baseline1", "baseline2", "final-bn"])
def test_native_batch_norm_computes_the_same(variant, test_images, monkeypatch):
    """NativeBatchNorm2d (PyTorch's fused kernel, the benchmark's peer) is the same function in
    float64: logits, every gradient, and the moving averages it records."""
    from tinybin.torch.layers import use_native_batch_norm
    x = test_images[0][:8].astype(np.float64)
    upstream = torch.from_numpy(np.random.default_rng(1).standard_normal((8, 10)))
    model = small_model(variant, 1, "symmetric")
    runs, calls, fused = [], [], torch.nn.functional.batch_norm
    monkeypatch.setattr(torch.nn.functional, "batch_norm", lambda *a, **k: calls.append(1) or fused(*a, **k))
    for native in (False, True):
        net = use_native_batch_norm(to_torch(model)) if native else to_torch(model)
        logits = net(torch.from_numpy(x))
        (logits * upstream).sum().backward()
        assert bool(calls) == native  # the fused kernel ran only when asked for
        runs.append((logits.detach().numpy(), {n: p.grad.numpy() for n, p in net.named_parameters()},
                     {n: b.numpy() for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var"))}))
    (ref_logits, ref_grads, ref_buffers), (logits, grads, buffers) = runs
    assert rel(logits, ref_logits) < 1e-10
    for name in ref_grads:
        assert rel(grads[name], ref_grads[name]) < 1e-10, name
    assert ref_buffers and all(rel(buffers[n], ref_buffers[n]) < 1e-6 for n in ref_buffers)


@pytest.mark.parametrize("stats", ["moving", "recalibrated"])
@pytest.mark.parametrize("variant", ["baseline1", "baseline2", "mean-bn", "final-bn"])
def test_eval_mode_equal_tinybin(variant, stats, test_images):
    """Inference with stored statistics (random ones here), either kind, equals tinybin's."""
    x = test_images[0][:8].astype(np.float64)
    model = small_model(variant, 1, "tf-same")
    rng = np.random.default_rng(2)
    for _, bn in model.batch_norms():
        scale = 50.0 if bn.num_channels == 3 else 1.0
        bn.running_mean = (scale * rng.standard_normal(bn.num_channels)).astype(np.float32)
        bn.running_var = (scale ** 2 * rng.uniform(0.5, 2, bn.num_channels)).astype(np.float32)
        bn.calib_mean = scale * rng.standard_normal(bn.num_channels)
        bn.calib_var = scale ** 2 * rng.uniform(0.5, 2, bn.num_channels)
        bn.calib_batches = np.array(3, np.int64)
        bn.inference_stats = stats
    model.eval()
    net = to_torch(model)
    assert not net.training
    assert rel(net(torch.from_numpy(x)).detach().numpy(), model(x).data) < 1e-10


def test_layouts_and_dtypes_give_the_same_logits(test_images):
    """NHWC, NCHW, channels_last model and uint8 pixels: the same logits; ambiguous shapes refused."""
    model = small_model("baseline2", 1, "symmetric", dtype=np.float32).eval()
    net = to_torch(model)
    x = test_images[0][:4]
    reference = model(x.astype(np.float32)).data
    nhwc = torch.from_numpy(x.astype(np.float32))
    with torch.no_grad():
        outs = {"nhwc": net(nhwc), "nchw": net(nhwc.permute(0, 3, 1, 2).contiguous()),
                "uint8": net(torch.from_numpy(x))}
        outs["channels_last"] = to_torch(model).to(memory_format=torch.channels_last)(nhwc)
    for name, out in outs.items():
        assert rel(out.numpy(), reference) < 1e-5, name
    with pytest.raises(ValueError, match="cannot tell NHWC from NCHW"):
        net(torch.zeros(2, 3, 8, 3))
    net.layout = "nhwc"
    assert net(torch.zeros(2, 3, 8, 3)).shape == (2, 10)


def test_round_trip_is_bit_identical(test_images):
    """tinybin → torch → tinybin after training steps and a recalibration: every parameter, buffer
    (moving and recalibrated statistics, counters), dtype, inference choice and SGD velocity."""
    x, y = test_images[0][:16].astype(np.float32), test_images[1][:16]
    model = small_model("baseline1", 1, "tf-same", dtype=np.float32)
    optimizer = SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        train_step(model, optimizer, x, y, 0.1)
    for _, bn in model.batch_norms():
        bn.start_recalibration()
    model(x)
    for _, bn in model.batch_norms():
        bn.finish_recalibration()
        bn.inference_stats = "moving"
    model.eval()

    net = to_torch(model)
    back = from_torch(net)
    before, after = model.state_dict(), back.state_dict()
    assert list(before) == list(after)
    for name in before:
        assert before[name].dtype == after[name].dtype, name
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)
    assert not back.training
    assert all(bn.inference_stats == "moving" for _, bn in back.batch_norms())
    channels_last = from_torch(to_torch(model).to(memory_format=torch.channels_last)).state_dict()
    for name in before:
        np.testing.assert_array_equal(before[name], channels_last[name], err_msg=name)

    torch_sgd = make_sgd(net)
    optimizer_state_to_torch(optimizer.state_dict(), torch_sgd, net)
    state = optimizer.state_dict()
    for name, value in optimizer_state_from_torch(torch_sgd, net).items():
        np.testing.assert_array_equal(value, state[name], err_msg=name)


def test_sgd_steps_equal_tinybin(test_images):
    """Two steps of tinybin's recipe (train_step, SGD momentum 0.9, wd 5e-4 on conv latent weights
    only) at two learning rates: torch ends with the same weights and velocities (float64, 1e-10).
    torch.optim.SGD would not: its momentum buffer is multiplied by the current lr."""
    x, y = test_images[0][:8].astype(np.float64), test_images[1][:8]
    model = small_model("baseline1", 1, "symmetric")
    net = to_torch(model)
    optimizer, torch_sgd = SGD(model.parameters(), lr=0.1), make_sgd(net, lr=0.1)
    for lr in (0.1, 0.05):
        train_step(model, optimizer, x, y, lr)
        torch_sgd.set_lr(lr)
        torch_sgd.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch_sgd.step()
    back = from_torch(net)
    for (name, p), (_, q) in zip(model.named_parameters(), back.named_parameters()):
        assert rel(q.data, p.data) < 1e-10, name
    state = optimizer.state_dict()
    for name, value in optimizer_state_from_torch(torch_sgd, net).items():
        assert rel(value, state[name]) < 1e-10, name


@pytest.mark.slow
def test_released_model_converted_keeps_its_accuracy(test_images):
    """The authors' 1-bit WRN-20-10, converted: 963 of the 1000 shipped test images (96.30 %).
    Slow: 1000 WRN-20-10 forwards on the CPU (8.5 minutes on 2 heavily shared cores)."""
    pytest.importorskip("scipy.io", reason="reading .mat files needs scipy")
    from tinybin.zoo import load_mcdonnell

    net = to_torch(load_mcdonnell(MAT))
    x, y = test_images
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), 250):
            correct += int((net(torch.from_numpy(x[i:i + 250])).argmax(1).numpy() == y[i:i + 250]).sum())
    assert (correct, len(x)) == (963, 1000)


def test_fixed_input_norm_converts_both_ways(test_images):
    """input_norm="fixed": the torch model's input BN is frozen too — its fitted statistics in
    training as in eval, no batch statistics, buffers untouched — and from_torch gives it back."""
    x = test_images[0][:8].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = wrn(8, 1, variant="baseline2", bits=1, input_norm="fixed", rng=0)
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    model.input_bn.fit_statistics(test_images[0][:100])
    net = to_torch(model)
    assert net.input_bn.frozen and bool(net.input_bn.fitted)
    before = {k: v.clone() for k, v in net.input_bn.state_dict().items()}
    for training in (True, False):
        model.train(training), net.train(training)
        assert rel(net(torch.from_numpy(x)).detach().numpy(), model(x).data) < 1e-10, training
        frozen_only = net.input_bn(torch.from_numpy(x).permute(0, 3, 1, 2))
        mean, var = model.input_bn.calib_mean, model.input_bn.calib_var
        expected = ((x - mean) / np.sqrt(var + 1e-5)).transpose(0, 3, 1, 2)
        assert rel(frozen_only.detach().numpy(), expected) < 1e-12, training
    for k, v in net.input_bn.state_dict().items():
        assert torch.equal(v, before[k]), k
    back = from_torch(net)
    assert back.config["input_norm"] == "fixed" and back.input_bn.frozen
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(back(x).data, model(x).data)


def test_both_batch_norms_keep_statistics_by_one_policy():
    """tinybin.nn.BatchNorm2d and tinybin.torch.BatchNorm2d share tinybin/nn/bn_statistics.py: the
    same moving averages (first batch initialises), recalibrated averages, choice of inference
    statistics and error texts, batch after batch."""
    from tinybin import nn as tnn
    from tinybin.nn.bn_statistics import NOT_FITTED, NOT_RECALIBRATED, BatchStatisticsPolicy
    from tinybin.torch.layers import BatchNorm2d as TorchBN

    rng = np.random.default_rng(5)
    numpy_bn, torch_bn = tnn.BatchNorm2d(3), TorchBN(3)
    assert isinstance(numpy_bn, BatchStatisticsPolicy) and isinstance(torch_bn, BatchStatisticsPolicy)
    batches = [rng.standard_normal((4, 5, 5, 3)) * [1, 2, 3] + [0, 1, -1] for _ in range(3)]

    def run(bn, x):
        return bn(x) if bn is numpy_bn else bn(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
    for bn in (numpy_bn, torch_bn):
        for x in batches:
            run(bn, x)
        bn.inference_stats = "recalibrated"
        with pytest.raises(RuntimeError) as error:
            bn.inference_mean_var()
        assert str(error.value) == NOT_RECALIBRATED
        bn.start_recalibration()
        for x in batches[:2]:
            run(bn, x)
        bn.finish_recalibration()
    for name in ("running_mean", "running_var", "moving_batches", "calib_mean", "calib_var", "calib_batches"):
        np.testing.assert_allclose(getattr(torch_bn, name).numpy(), getattr(numpy_bn, name), rtol=1e-6, err_msg=name)
    assert int(numpy_bn.moving_batches) == 3 and int(numpy_bn.calib_batches) == 2
    mean = np.mean([x.reshape(-1, 3).mean(0) for x in batches[:2]], axis=0)
    np.testing.assert_allclose(numpy_bn.inference_mean_var()[0], mean, rtol=1e-12)
    with pytest.raises(RuntimeError) as error:
        TorchBN(3, frozen=True).inference_mean_var()
    assert str(error.value) == NOT_FITTED
