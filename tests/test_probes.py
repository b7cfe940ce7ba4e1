"""Probes record what they claim: gradients at z, h, logits and head weights (summed-loss
convention), sign flips, update sizes, activation floors; the statistics and CCDF are right;
a probe that is off changes and records nothing."""
import json
import math

import numpy as np
import pytest

import tinybin.functional as F
from tinybin import probes
from tinybin.models import wrn
from tinybin.optim import SGD
from tinybin.probes import Probe


def tiny(variant="srelu", bits=1, seed=0):
    """WRN-8-1 in float64, 4 classes: small enough for a direct autograd comparison."""
    model = wrn(depth=8, width=1, num_classes=4, variant=variant, bits=bits,
                temperature=5.0 if variant in ("srelu", "elu") else None, rng=seed)
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def batch(n=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, 8, 8, 3)), rng.integers(0, 4, n)


def step(model, probe, x, y, opt=None):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    model.zero_grad()
    loss.backward()
    probe.after_backward(model, logits, loss, y)
    if opt is not None:
        opt.step()
        probe.after_step(model)
    return logits, loss


@pytest.mark.parametrize("variant", ["srelu", "baseline2"])
def test_gradients_at_z_h_logits_match_direct_autograd(variant):
    x, y = batch()
    n = len(y)
    model = tiny(variant)
    probe = Probe(model, sample=10 ** 6)  # keep every value
    logits, loss = step(model, probe, x, y)

    # direct computation: forward by hand to the head conv, keep z and h, backward the mean loss
    ref = tiny(variant)
    h_store = {}
    ref.head.conv.register_forward_hook(lambda m, inp, out: h_store.update(h=inp.retain_grad(), z=out.retain_grad()))
    ref.head.unit.register_forward_hook(lambda m, inp, out: h_store.update(x=inp.retain_grad()))
    ref_logits = ref(x)
    ref_logits.retain_grad()
    F.cross_entropy(ref_logits, y).backward()
    rec = probe.records[0]
    for point, g in (("z", h_store["z"].grad), ("h", h_store["h"].grad), ("head_x", h_store["x"].grad),
                     ("logits", ref_logits.grad), ("head_w", ref.head.conv.weight.grad)):
        sampled = probe.values(point)
        full = np.sort((n * g).ravel())                        # summed-loss convention: × batch size
        assert rec["grad"][point]["n"] == g.size
        np.testing.assert_allclose(rec["grad"][point]["max"], np.abs(full).max(), rtol=1e-12)
        np.testing.assert_allclose(rec["grad"][point]["std"], full.std(), rtol=1e-9)
        # every sampled value is one of the true values
        idx = np.clip(np.searchsorted(full, sampled.astype(np.float64)), 0, full.size - 1)
        near = np.minimum(np.abs(full[idx] - sampled), np.abs(full[idx - 1] - sampled))
        assert np.all(near <= 1e-6 * np.abs(full).max())
        # drawn without replacement: a tensor no larger than `sample` is kept whole, each value once
        np.testing.assert_allclose(np.sort(sampled.astype(np.float64)), full, rtol=0, atol=1e-6 * np.abs(full).max())
    # dL/dlogits summed = softmax − onehot: each row sums to 0 and the label's entry is negative
    p = np.exp(logits.data - logits.data.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(n), y] -= 1
    np.testing.assert_allclose(rec["grad"]["logits"]["std"], p.std(), rtol=1e-9)
    np.testing.assert_allclose(rec["loss"], loss.item())


def test_flip_ratio_and_update_on_hand_made_weights():
    x, y = batch()
    model = tiny()
    probe = Probe(model, activations=False)
    step(model, probe, x, y)
    convs = model.convs()
    before = {name: c.weight.data.copy() for name, c in convs}
    # hand-made update: flip the sign of exactly 3 weights of the stem and 1 of the head
    stem, head = convs[0][1].weight.data, convs[-1][1].weight.data
    stem.flat[[0, 5, 7]] *= -1
    head.flat[2] *= -1
    stem.flat[1] *= 2.0           # a change of size without a change of sign
    probe.after_step(model)
    rec = probe.records[0]
    total = sum(c.weight.size for _, c in convs)
    assert rec["layers"]["stem"]["flip"] == pytest.approx(3 / stem.size)
    assert rec["layers"]["head.conv"]["flip"] == pytest.approx(1 / head.size)
    assert rec["layers"]["stage1.block0.conv_a"]["flip"] == 0
    assert rec["flip_ratio"] == pytest.approx(4 / total)
    d = stem - before["stem"]
    assert rec["layers"]["stem"]["update_ratio"] == pytest.approx(np.linalg.norm(d) / np.linalg.norm(before["stem"]))


def test_flip_counts_zero_as_positive():
    """sign(0) = +1 as in F.binarize: a weight moving from +0.3 to 0 did not flip; to −0.1 did."""
    model = tiny()
    probe = Probe(model, activations=False)
    w = model.stem.weight.data
    w.flat[0], w.flat[1] = 0.3, 0.3
    step(model, probe, *batch())              # the probe keeps the weights as they are now
    w.flat[0], w.flat[1] = 0.0, -0.1
    probe.after_step(model)
    assert probe.records[0]["layers"]["stem"]["flip"] == pytest.approx(1 / w.size)


def test_update_filled_in_by_next_step_without_after_step():
    x, y = batch()
    model = tiny()
    opt = SGD(model.parameters(), lr=0.1)
    probe = Probe(model, activations=False)
    w0 = model.stem.weight.data.copy()
    step(model, probe, x, y)
    opt.step()
    w1 = model.stem.weight.data.copy()
    step(model, probe, x, y)         # no after_step: the first record is completed here
    assert probe.records[0]["layers"]["stem"]["update_ratio"] == pytest.approx(
        np.linalg.norm(w1 - w0) / np.linalg.norm(w0))
    assert "update_ratio" not in probe.records[1]["layers"]["stem"]
    probe.close()
    assert "update_ratio" in probe.records[1]["layers"]["stem"]


def test_grad_ratio_and_unit_floors():
    x, y = batch()
    model = tiny("srelu")
    probe = Probe(model)
    step(model, probe, x, y)
    rec = probe.records[0]
    g, w = model.stem.weight.grad, model.stem.weight.data
    assert rec["layers"]["stem"]["grad_ratio"] == pytest.approx(np.linalg.norm(g) / np.linalg.norm(w))
    # recompute one unit's output and its fraction at −1
    seen = {}
    model.stage1.block0.unit_b.register_forward_hook(lambda m, i, o: seen.update(a=o.data))
    step(model, probe, x, y)
    u = probe.records[1]["units"]["stage1.block0.unit_b"]
    assert u["floor"] == pytest.approx(np.mean(seen["a"] <= -1))
    assert u["std"] == pytest.approx(seen["a"].std())
    assert set(probe.records[1]["stream"]) == {"stem", "stage1.block0", "stage2.block0", "stage3.block0"}


def test_relu_floor_is_zero():
    x, y = batch()
    model = tiny("baseline2")
    probe = Probe(model)
    seen = {}
    model.head.unit.register_forward_hook(lambda m, i, o: seen.update(a=o.data))
    step(model, probe, x, y)
    assert probe.records[0]["units"]["head.unit"]["floor"] == pytest.approx(np.mean(seen["a"] == 0))
    assert 0.2 < probe.records[0]["units"]["head.unit"]["floor"] < 0.8


def test_off_records_nothing_and_leaves_the_model_alone():
    x, y = batch()
    model = tiny()
    probe = Probe(model, enabled=False)
    assert all(not m._hooks for m in model.modules())
    step(model, probe, x, y)
    assert probe.records == [] and probe.values("z").size == 0
    probe.enabled = True
    step(model, probe, x, y)
    assert len(probe.records) == 1 and probe.values("z").size > 0
    probe.enabled = False
    assert all(not m._hooks for m in model.modules())


def test_eval_batches_are_not_recorded():
    from tinybin.tensor import no_grad
    x, y = batch()
    model = tiny("baseline2")
    probe = Probe(model)
    model.eval()
    with no_grad():
        model(x)
    assert probe.forward_stats() == {}


def test_kurtosis_of_gaussian_and_pooled_moments():
    rng = np.random.default_rng(0)
    g = rng.standard_normal(400_000)
    assert probes.kurtosis(g) == pytest.approx(3.0, abs=0.05)
    assert probes.kurtosis(rng.uniform(-1, 1, 400_000)) == pytest.approx(1.8, abs=0.02)
    assert probes.kurtosis(rng.laplace(size=400_000)) == pytest.approx(6.0, abs=0.3)
    # pooling power sums over "steps" equals the statistics of the concatenation
    parts = [rng.standard_normal(1000) * s + m for s, m in ((1, 0), (3, 0.5), (0.2, -1))]
    records = [{"step": i, "grad": {"z": probes.tail_stats(p)}} for i, p in enumerate(parts)]
    whole = np.concatenate(parts)
    pooled = probes.pooled(records, "z")
    assert pooled["n"] == whole.size
    assert pooled["std"] == pytest.approx(whole.std(), rel=1e-10)
    assert pooled["kurtosis"] == pytest.approx(probes.kurtosis(whole), rel=1e-8)
    assert probes.pooled(records, "z", 1, 2)["std"] == pytest.approx(parts[1].std(), rel=1e-10)


def test_tail_stats_percentile_and_max():
    g = -np.arange(1, 1001, dtype=np.float64)          # |g| = 1..1000
    s = probes.tail_stats(g)
    assert s["max"] == 1000 and s["p999"] == 999


def test_ccdf_on_a_known_sample():
    x, p = probes.ccdf([3.0, -1.0, 2.0, 2.0, 4.0])
    np.testing.assert_array_equal(x, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(p, [0.8, 0.4, 0.2])
    big = np.random.default_rng(1).standard_normal(10_000)
    x, p = probes.ccdf(big)
    assert np.all(np.diff(x) > 0) and np.all(np.diff(p) < 0)
    i = np.searchsorted(x, 1.0)
    assert p[i] == pytest.approx(math.erfc(1 / math.sqrt(2)), abs=0.01)   # P(|N(0,1)| > 1) = 0.317


def test_save_load_and_table(tmp_path):
    x, y = batch()
    model = tiny()
    opt = SGD(model.parameters(), lr=0.1)
    probe = Probe(model, sample=50)
    for _ in range(3):
        step(model, probe, x, y, opt)
    jsonl, npz = probe.save(tmp_path)
    records, samples = probes.load(tmp_path)
    assert [r["step"] for r in records] == [0, 1, 2]
    assert json.loads(jsonl.read_text().splitlines()[0])["step"] == 0
    values, steps = samples["z"]
    assert values.size == 150 and list(np.unique(steps)) == [0, 1, 2]
    table = probes.layer_table(records[0])
    assert "head.conv" in table and "stem" in table and len(table.splitlines()) == 1 + len(model.convs())
    fig = probes.plot_ccdf_phases({"a": probe}, "z", [(0, 2), (2, 3)])
    fig2 = probes.plot_over_time({"a": probe}, "h")
    fig.savefig(tmp_path / "c.png")
    fig2.savefig(tmp_path / "t.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_a_probe_point_is_added_by_module_name_or_callable():
    x, y = batch()
    model = tiny()
    points = {**probes.POINTS, "stage2": "stage2.block0", "stem_w": lambda m: m.stem.weight.grad}
    probe = Probe(model, points=points, sample=10 ** 6)
    ref = tiny()
    kept = {}
    ref.stage2.block0.register_forward_hook(lambda m, i, o: kept.update(o=o.retain_grad()))
    F.cross_entropy(ref(x), y).backward()
    step(model, probe, x, y)
    g = kept["o"].grad * len(y)                                  # summed-loss convention
    assert probe.records[0]["grad"]["stage2"]["std"] == pytest.approx(g.std(), rel=1e-10)
    gw = ref.stem.weight.grad * len(y)
    rec = probe.records[0]["grad"]["stem_w"]
    assert (rec["n"], rec["max"]) == (gw.size, pytest.approx(np.abs(gw).max(), rel=1e-10))
    assert np.isin(probe.values("stem_w"), gw.astype(np.float32)).all()
    with pytest.raises(ValueError, match="no module 'stage9'"):
        Probe(model, points={"x": "stage9"})


@pytest.mark.parametrize("variant,name", [("final-bn", "head.final"), ("mean-bn", "head.final.bn")])
def test_the_final_bn_sigma_is_a_probe_point(variant, name):
    x, y = batch()
    model = wrn(depth=8, width=1, num_classes=4, variant=variant, bits=1, rng=0,
                **({"temperature": 5.0} if variant == "mean-bn" else {}))
    seen = {}
    model.head.conv.register_forward_hook(lambda m, i, z: seen.update(z=z.data))
    probe = Probe(model)
    assert probe.bn_names == [name]
    step(model, probe, x, y)
    z = seen["z"].reshape(-1, 4).astype(np.float64) / (5.0 if variant == "mean-bn" else 1.0)
    bn = probe.records[0]["bn"][name]
    np.testing.assert_allclose(bn["sigma"], np.sqrt(z.var(axis=0) + 1e-5), rtol=1e-5)
    np.testing.assert_allclose(bn["mean"], z.mean(axis=0), rtol=1e-5, atol=1e-6)
