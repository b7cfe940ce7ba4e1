"""Packed export (one bit per weight), the add/subtract conv path, and the operation counts."""
import json
import math
import warnings

import numpy as np
import pytest

import tinybin.functional as F
from tinybin import Tensor, no_grad
from tinybin.cli import main
from tinybin.embedded import addsub_forward, comparison_report, conv2d_addsub, op_counts, totals
from tinybin.export import load_packed, pack, save_packed
from tinybin.models import VARIANTS, conv_weight_count, wrn
from tinybin.models.wrn import uses_temperature
from tinybin.train import recalibrate_bn

RNG = np.random.default_rng(0)
X = RNG.integers(0, 256, (6, 32, 32, 3)).astype(np.float32)


def tiny(variant, bits=1, padding="tf-same", seed=1):
    """WRN-8-1 with non-trivial BN statistics: one training-mode batch moves the moving averages."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = wrn(8, 1, variant=variant, bits=bits, padding=padding, rng=seed)
    with no_grad():
        model.train()(X[::-1] * 0.7)
    return model.eval()


def logits(model, x=X):
    with no_grad():
        return model.eval()(x).data


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_is_exact(tmp_path, variant):
    """Unfolded, the loaded model computes exactly what the original did: identical logits."""
    model = tiny(variant)
    save_packed(model, tmp_path / "m.npz", fold_temperature=False)
    loaded = load_packed(tmp_path / "m.npz")
    assert not loaded.training
    np.testing.assert_array_equal(logits(loaded), logits(model))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_round_trip_with_folded_temperature(tmp_path, variant):
    """Folding 1/T into the head multiplier changes float32 rounding only; other variants stay exact."""
    model = tiny(variant)
    save_packed(model, tmp_path / "m.npz")
    loaded, ref = logits(load_packed(tmp_path / "m.npz")), logits(model)
    if uses_temperature(variant):
        assert json.loads(pack(model)["arch"].tobytes())["temperature_folded"]
        np.testing.assert_allclose(loaded, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
        np.testing.assert_array_equal(loaded.argmax(1), ref.argmax(1))
    else:
        np.testing.assert_array_equal(loaded, ref)


def test_round_trip_with_recalibrated_statistics(tmp_path):
    """Recalibrated statistics are float64: stored as they are used, so still exact."""
    model = tiny("baseline1", padding="symmetric")
    recalibrate_bn(model, [X[:3], X[3:]])
    save_packed(model.eval(), tmp_path / "m.npz")
    np.testing.assert_array_equal(logits(load_packed(tmp_path / "m.npz")), logits(model))


def test_round_trip_of_a_fixed_input_norm(tmp_path):
    """input_norm="fixed" is in the file: the loaded input BN is frozen, with the same statistics."""
    model = wrn(8, 1, variant="baseline2", input_norm="fixed", rng=1)
    model.input_bn.fit_statistics(X)
    save_packed(model.eval(), tmp_path / "m.npz")
    loaded = load_packed(tmp_path / "m.npz")
    assert loaded.config["input_norm"] == "fixed" and loaded.input_bn.frozen
    np.testing.assert_array_equal(loaded.input_bn.calib_mean, model.input_bn.calib_mean)
    np.testing.assert_array_equal(logits(loaded), logits(model))


def test_bits_are_stored_one_per_weight(tmp_path):
    model = tiny("baseline2")
    arrays = pack(model)
    bit_bytes = sum(v.nbytes for k, v in arrays.items() if k.startswith("conv/"))
    assert bit_bytes == sum(math.ceil(conv.weight.size / 8) for _, conv in model.convs())
    assert all(v.dtype == np.uint8 for k, v in arrays.items() if k.startswith("conv/"))
    size = save_packed(model, tmp_path / "m.npz")
    assert size < conv_weight_count(model) * 4 / 8  # far below float32 even with its index


def test_32_bit_export_is_refused(tmp_path):
    with pytest.raises(ValueError, match="32-bit weights"):
        save_packed(tiny("baseline2", bits=32), tmp_path / "m.npz")


def test_load_packed_refuses_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(ValueError, match="not a packed tinybin model"):
        load_packed(tmp_path / "other.npz")


def test_cli_export_of_a_checkpoint(tmp_path, capsys):
    from tinybin.optim import SGD
    from tinybin.train import TrainConfig, load_checkpoint, save_checkpoint

    model = tiny("srelu")
    cfg = TrainConfig(width=1, depth=8, variant="srelu", temperature=model.config["temperature"], padding="tf-same",
                      bn_stats="moving")
    meta = dict(config=vars(cfg), arch=cfg.arch(), num_classes=10, epoch=1, bn_stats="moving")
    save_checkpoint(tmp_path / "checkpoint.npz", model, SGD(model.parameters(), lr=0.1), meta)
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "packed.npz"), "--no-fold"]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "MB" in out
    original, _ = load_checkpoint(tmp_path)
    np.testing.assert_array_equal(logits(load_packed(tmp_path / "packed.npz")), logits(original))


def test_evaluate_reads_checkpoints_and_packed_exports_alike(tmp_path, capsys):
    """One loader under `evaluate`: a checkpoint and its packed export give the same accuracy."""
    import re

    from tinybin.loader import load_model
    from tinybin.optim import SGD
    from tinybin.train import TrainConfig, save_checkpoint

    model = tiny("srelu")
    cfg = TrainConfig(width=1, depth=8, variant="srelu", temperature=model.config["temperature"], padding="tf-same")
    meta = dict(config=vars(cfg), arch=cfg.arch(), num_classes=10, epoch=1, bn_stats="moving")
    save_checkpoint(tmp_path / "run" / "checkpoint.npz", model, SGD(model.parameters(), lr=0.1), meta)
    save_packed(model, tmp_path / "packed.npz", fold_temperature=False)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "images.npz", x=rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), y=np.arange(12) % 10)
    assert load_model(tmp_path / "packed.npz")[1]["kind"] == "packed"
    assert load_model(tmp_path / "run")[1]["kind"] == "checkpoint"
    found = []
    for source in (tmp_path / "run", tmp_path / "packed.npz"):
        assert main(["evaluate", str(source), "--npz", str(tmp_path / "images.npz")]) == 0
        found.append(re.search(r"test accuracy ([\d.]+ %) on 12 images", capsys.readouterr().out).group(1))
    assert found[0] == found[1]
    assert main(["evaluate", str(tmp_path / "nothing.npz")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_cli_export_with_nothing_to_do(tmp_path, capsys):
    assert main(["export"]) == 2
    assert "nothing to do" in capsys.readouterr().err


# --------------------------------------------------------------------------------- add/subtract path


@pytest.mark.parametrize("stride, padding", [(1, 1), (2, (0, 1, 0, 1)), (1, 0)])
def test_addsub_conv_equals_float_conv(stride, padding):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 8, 5))
    bits = rng.integers(0, 2, (3, 3, 5, 4))
    c = math.sqrt(2 / 45)
    expected = F.conv2d(Tensor(x), Tensor(c * (2.0 * bits - 1)), stride=stride, padding=padding).data
    np.testing.assert_allclose(conv2d_addsub(x, bits, c, stride, padding), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("variant", ["baseline2", "srelu"])
def test_addsub_network_equals_float_network(variant):
    model = tiny(variant)
    ref = logits(model, X[:3])
    out = addsub_forward(model, X[:3])
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_array_equal(logits(model, X[:3]), ref)  # the model's own convs are back


# --------------------------------------------------------------------------------- operation counts


def test_op_counts_by_formula():
    """Every row against an independent computation on WRN-8-1 (baseline2, TF "same" padding)."""
    model = tiny("baseline2")
    rows = {name: (kind, shape, counts) for name, kind, shape, counts in op_counts(model)}
    shapes = {}
    for name, m in model.named_modules():
        m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, (i.shape[1:], o.shape[1:])))
    logits(model, X[:1])
    for name, conv in model.convs():
        (H, W, C), (OH, OW, OC) = shapes[name]
        # inputs each output really sums = a conv of ones with ones (padding contributes zeros)
        taps = F.conv2d(Tensor(np.ones((1, H, W, C))), Tensor(np.ones((conv.k, conv.k, C, 1))),
                        stride=conv.stride, padding=conv.padding).data
        assert rows[name][2]["add"] == OC * int((taps - 1).sum()), name
        assert rows[name][2]["weight_bytes"] == math.ceil(conv.weight.size / 8) + 4
    assert rows["stage1.block0.conv_a"][2]["mul"] == 0          # c folds into unit_b's BN
    assert rows["head.conv"][2]["mul"] == 0                     # ... and into the final BN
    assert rows["stem"][2]["mul"] == 32 * 32 * 16               # the residual stream needs c·s
    assert rows["stage1.block0.conv_b"][2]["mul"] == 32 * 32 * 16  # ×c once per output
    for name, bn in model.batch_norms():
        n = int(np.prod(shapes[name][1]))
        c = rows[name][2]
        assert c["mul"] == n and c["sqrt"] == bn.num_channels
        assert c["add"] == n * (2 if bn.bias is not None else 1)
        assert c["bn_bytes"] == 4 * bn.num_channels * (4 if bn.weight is not None else 2)
    assert rows["stage1.block0.unit_a.act"][2]["cmp"] == 32 * 32 * 16
    # the stage-2 shortcut pools 3×3/2 over 32×32 with TF "same" padding: windows of 3 rows, the last of 2
    per_dim = np.array([3] * 15 + [2])
    pool_taps = np.outer(per_dim, per_dim)
    assert rows["stage2.block0.shortcut.pool"][2]["add"] == 16 * int((pool_taps - 1).sum())
    assert rows["stage2.block0.add"][2]["add"] == 16 * 16 * 16     # only the 16 real shortcut channels
    assert rows["stage1.block0.add"][2]["add"] == 32 * 32 * 16
    assert rows["head.pool"][2]["add"] == 10 * (8 * 8 - 1)


def test_srelu_drops_the_bn_costs():
    base = totals(op_counts(tiny("baseline2")))
    free = totals(op_counts(tiny("srelu")))
    assert free["sqrt"] == 3 and free["bn_bytes"] == 4 * 4 * 3       # the input BN only
    assert free["cmp"] == base["cmp"] and free["weight_bytes"] == base["weight_bytes"]
    assert free["mul"] < base["mul"]
    assert "srelu saves" in comparison_report(8, 1)


def test_cli_report_on_a_fresh_model(capsys):
    assert main(["export", "--report", "--arch", "8-1", "--variant", "srelu"]) == 0
    out = capsys.readouterr().out
    assert "head.conv" in out and "total" in out and "baseline2" in out


def test_bench_infer_runs(capsys):
    assert main(["bench", "infer", "--arch", "8-1", "--batch-size", "4", "--batches", "1", "--addsub"]) == 0
    out = capsys.readouterr().out
    assert "images/s" in out and "add/subtract" in out
