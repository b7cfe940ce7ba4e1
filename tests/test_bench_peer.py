"""bench.peer and bench.peer_plain: the PyTorch networks `bench train --vs-torch` times."""
import warnings

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install '.[torch]' runs these tests")

from tinybin.bench.peer import KINDS, build, measure_torch
from tinybin.bench.peer_plain import PlainWRN
from tinybin.models import wrn

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("variant", ["baseline2", "srelu"])
@pytest.mark.parametrize("width", [1, 4])
def test_the_plain_network_has_the_parameters_of_tinybins(variant, width):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the default temperature
        model = wrn(20, width, variant=variant, rng=0)
    plain = PlainWRN(20, width, variant)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.data.size for p in model.parameters())
    convs = sorted(tuple(m.weight.shape) for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    assert convs == sorted((w.shape[3], w.shape[2], w.shape[0], w.shape[1])
                           for w in (m.weight.data for _, m in model.convs()))


@pytest.mark.parametrize("variant", ["baseline2", "srelu"])
def test_the_plain_network_trains_one_step(variant):
    torch.manual_seed(0)
    net = PlainWRN(8, 1, variant).to(memory_format=torch.channels_last)
    x = (torch.rand(16, 3, 32, 32) * 255).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    # the straight-through sign hands each latent weight a gradient; every conv's weight moves
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in net.parameters())
    opt.step()
    assert all(not torch.equal(before[n], p) for n, p in net.named_parameters())
    assert 1.0 < loss.item() < 10.0


def test_the_plain_sign_is_one_bit_with_sign_zero_plus_one():
    net = PlainWRN(8, 1, "srelu")
    conv = net.stem
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = -3.0
    x = torch.zeros(1, 3, 3, 3)
    x[0, 0, 1, 1] = 1.0     # the kernel's centre sees one input: out = c·sign(w[:, 0, 1, 1])
    out = conv(x)[0, :, 1, 1]
    assert torch.allclose(out, torch.full_like(out, conv.c))
    x = torch.zeros(1, 3, 3, 3)
    x[0, 0, 0, 0] = 1.0     # seen by the top-left weight at the centre output: -3 -> -c for channel 0
    assert float(conv(x)[0, 0, 1, 1]) == pytest.approx(-conv.c)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_peer_kind_measures_a_step(kind):
    r = measure_torch(1, "srelu", depth=8, batch_size=4, steps=1, warmup=0, kind=kind)
    assert r["kind"] == kind and r["step_ms"] > 0 and r["images_per_s"] == pytest.approx(4e3 / r["step_ms"])
    assert r["peak_mb"] > 0 and r["threads"] >= 1
    net = build(kind, 1, "baseline2", depth=8)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_an_unknown_peer_kind_is_named():
    with pytest.raises(ValueError, match="'gpu'"):
        build("gpu", 1, "srelu")
