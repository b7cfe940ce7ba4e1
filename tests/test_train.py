"""tinybin.train: steps, evaluation, BN recalibration, checkpoints, resume, divergence."""
import dataclasses
import json
import math

import numpy as np
import pytest

from tinybin import nn
from tinybin.models import wrn
from tinybin.optim import SGD
from tinybin.train import (
    Diverged,
    DivergenceDetector,
    TrainConfig,
    evaluate,
    load_checkpoint,
    read_checkpoint,
    recalibrate_bn,
    set_bn_stats,
    train,
    train_step,
)
from tinybin.train.config import resume_config
from tinybin.train.engine import Engine


def tiny_data(n_train=250, n_test=50, seed=0, size=16):
    """Random uint8 16×16 images with random labels: tests of mechanics, not of learning."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n_train + n_test, size, size, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n_train + n_test).astype(np.int64)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


def tiny_config(tmp_path, name="run", **kw):
    kw = dict(dict(depth=8, width=1, variant="baseline2", epochs=2, subset=None, epoch_eval_size=None,
                   out=str(tmp_path / name), seed=1), **kw)
    return TrainConfig(**kw)


def quiet(*args, **kwargs):
    pass


def test_train_step_changes_weights_and_returns_loss():
    model = wrn(8, 1, variant="baseline2", rng=0)
    opt = SGD(model.parameters(), lr=0.1)
    (x, y), _ = tiny_data(125, 1)
    before = [p.data.copy() for p in model.parameters()]
    loss, correct = train_step(model, opt, x.astype(np.float32), y, lr=0.1)
    assert math.isfinite(loss) and 0 <= correct <= 125
    assert loss == pytest.approx(math.log(10), abs=1.0)
    assert all(not np.array_equal(b, p.data) for b, p in zip(before, model.parameters()))


def test_evaluate_matches_manual_argmax_and_restores_mode():
    model = wrn(8, 1, variant="srelu", temperature=40, rng=0)
    _, (x, y) = tiny_data(1, 60)
    model.train()
    loss, acc = evaluate(model, x, y, batch_size=25)
    assert model.training
    model.eval()
    pred = model(x.astype(np.float32)).data.argmax(1)
    assert acc == pytest.approx((pred == y).mean())
    assert loss > 0


def test_recalibrated_statistics_are_the_average_of_per_batch_statistics():
    """The input BN sees the raw pixels, so its statistics can be computed independently; a deep
    BN is checked by recording its input with a hook."""
    model = wrn(8, 1, variant="baseline2", rng=0)
    (x, y), _ = tiny_data(300, 1)
    batches = [(x[i:i + 100].astype(np.float32), y[i:i + 100]) for i in range(0, 300, 100)]
    deep = model.stage2.block0.unit_b.bn
    seen = []
    deep.register_forward_hook(lambda m, inp, out: seen.append(inp.data.copy()))
    before = model.input_bn.running_mean.copy()
    assert recalibrate_bn(model, batches) == 3
    means = [b.reshape(-1, 3).mean(0) for b, _ in batches]
    variances = [b.reshape(-1, 3).var(0) for b, _ in batches]
    np.testing.assert_allclose(model.input_bn.calib_mean, np.mean(means, 0), rtol=1e-5)
    np.testing.assert_allclose(model.input_bn.calib_var, np.mean(variances, 0), rtol=1e-4)
    C = deep.num_channels
    np.testing.assert_allclose(deep.calib_mean, np.mean([s.reshape(-1, C).mean(0) for s in seen], 0),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(deep.calib_var, np.mean([s.reshape(-1, C).var(0) for s in seen], 0),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(model.input_bn.running_mean, before)  # moving averages kept
    assert all(bn.calib_batches == 3 for _, bn in model.batch_norms())


def test_recalibration_without_bn_layers_is_a_no_op():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    assert recalibrate_bn(model, [np.zeros((2, 4, 4, 3), np.float32)]) == 0


def test_a_run_writes_metrics_curves_and_a_loadable_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path)
    data = tiny_data()
    lines = []
    result = train(cfg, data=data, log=lines.append)
    out = tmp_path / "run"
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["epoch", "epoch", "final"]
    assert records[-1]["test_acc"] == result["test_acc"]
    steps = [json.loads(l) for l in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [0, 1, 2, 3]  # 250 images, batch 125, 2 epochs
    assert steps[0]["lr"] == pytest.approx(0.1)
    assert (out / "curves.png").stat().st_size > 1000
    assert any(l.startswith("test accuracy:") for l in lines)
    model, meta = load_checkpoint(out / "checkpoint.npz")
    assert meta["epoch"] == 2 and meta["arch"]["variant"] == "baseline2"
    assert all(int(bn.calib_batches) == 2 for _, bn in model.batch_norms())
    loss, acc = evaluate(model, *data[1])
    assert acc == pytest.approx(result["test_acc"])


def test_a_run_asks_its_engine_to_compile_ahead_before_reading_data(tmp_path):
    """kernels/warm.py's helper must start before anything else, so that it runs beside the set-up."""
    calls = []

    class Recording(Engine):
        def compile_ahead(self):
            calls.append("compile_ahead")

        def load_data(self, cfg):
            calls.append("load_data")
            return tiny_data()

    train(tiny_config(tmp_path, epochs=1), log=quiet, engine=Recording())
    assert calls == ["compile_ahead", "load_data"]


def test_same_seed_same_run(tmp_path):
    data = tiny_data()
    a = train(tiny_config(tmp_path, "a", epochs=1, variant="srelu", temperature=40), data=data, log=quiet)
    b = train(tiny_config(tmp_path, "b", epochs=1, variant="srelu", temperature=40), data=data, log=quiet)
    assert a["test_acc"] == b["test_acc"]
    sa, _, _ = read_checkpoint(tmp_path / "a")
    sb, _, _ = read_checkpoint(tmp_path / "b")
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)


def test_resume_is_bit_identical(tmp_path):
    """2 epochs straight == 1 epoch, stop, resume for the second: same weights, velocities,
    BN statistics and metrics."""
    data = tiny_data()
    straight = train(tiny_config(tmp_path, "straight"), data=data, log=quiet)
    part = train(tiny_config(tmp_path, "split", stop_after=1), data=data, log=quiet)
    assert part["epochs_done"] == 1 and "test_acc" not in part
    resumed = train(tiny_config(tmp_path, "split"), data=data, resume=True, log=quiet)
    assert resumed["test_acc"] == straight["test_acc"]
    ms, os_, meta_s = read_checkpoint(tmp_path / "straight")
    mr, or_, meta_r = read_checkpoint(tmp_path / "split")
    assert ms.keys() == mr.keys() and os_.keys() == or_.keys()
    for k in ms:
        np.testing.assert_array_equal(ms[k], mr[k], err_msg=k)
    for k in os_:
        np.testing.assert_array_equal(os_[k], or_[k], err_msg=k)
    steps = lambda name: (tmp_path / name / "steps.jsonl").read_text()
    assert steps("straight") == steps("split")
    records = lambda name: [json.loads(l) for l in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records("split")] == ["epoch", "resumed", "epoch", "final"]
    assert {k: records("split")[1][k] for k in ("epoch", "step")} == {"epoch": 1, "step": 2}
    epochs = lambda name: [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")}
                           for r in records(name) if r["kind"] == "epoch"]
    assert epochs("straight") == epochs("split")


def test_divergence_at_lr_100_stops_with_message_and_keeps_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, "div", variant="srelu", temperature=40, lr=100, epochs=3)
    with pytest.raises(Diverged, match=r"diverged at step \d+ \(loss=") as info:
        train(cfg, data=tiny_data(), log=quiet)
    out = tmp_path / "div"
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["kind"] == "diverged" and records[-1]["step"] == info.value.step
    _, _, meta = read_checkpoint(out)
    assert meta["epoch"] < 3  # the last good one (epoch 0 = the initial weights)
    assert meta["epoch"] * 2 <= info.value.step


def test_keep_going_watches_a_divergence_run_on(tmp_path):
    # lr 1000: at lr 100 whether 4 steps reach 100× the first loss hangs on float32 rounding
    cfg = tiny_config(tmp_path, "on", variant="srelu", temperature=40, lr=1000, epochs=2, on_diverge="continue")
    lines = []
    result = train(cfg, data=tiny_data(), log=lines.append)
    assert result["diverged"].startswith("diverged at step")
    assert any("continuing" in l for l in lines)
    records = [json.loads(l) for l in (tmp_path / "on" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records].count("epoch") == 2


def test_divergence_detector_kinds():
    d = DivergenceDetector(10, factor=100, window=5)
    assert d.check(2.3, False) is None
    assert d.check(float("nan"), False) == "non-finite"
    assert d.check(1e10, False) == "exploded"  # no NaN needed
    d = DivergenceDetector(10, factor=100, window=5)
    reasons = [d.check(2.302585, True) for _ in range(5)]  # the same logits for every image
    assert reasons[:4] == [None] * 4 and reasons[4].startswith("dead")
    d = DivergenceDetector(10, factor=100, window=5)  # one image differs now and then: not dead
    assert all(d.check(2.302585, i % 4 != 0) is None for i in range(20))


def test_dead_means_the_same_logits_for_every_image():
    from tinybin.train import same_output
    assert same_output(np.tile([[0.5, -1.0, 3.0]], (6, 1)))
    assert not same_output(np.array([[0.5, -1.0, 3.0], [0.5, -1.0, 3.01]]))


def test_resume_without_checkpoint_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config(tmp_path, "nothing"), data=tiny_data(), resume=True, log=quiet)


def test_progress_bar_only_on_a_terminal():
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term, pipe = Terminal(), io.StringIO()
    from tinybin.train import Progress
    for stream in (term, pipe):
        bar = Progress(total_steps=64, stream=stream)
        bar.update(step=9, epoch=0, loss=2.1234, acc=0.25, images_per_s=150.0, eta_s=125, force=True)
        bar.clear()
    text = term.getvalue()
    assert "step 10/64" in text and "loss 2.1234" in text and "150 img/s" in text and "ETA 2:05" in text
    assert pipe.getvalue() == ""


@pytest.mark.parametrize("bn_stats", ["moving", "recalibrated"])
def test_final_test_uses_the_chosen_bn_statistics(tmp_path, bn_stats):
    data = tiny_data(250, 50)
    result = train(tiny_config(tmp_path, epochs=1, bn_stats=bn_stats), data=data, log=quiet)
    model, _ = load_checkpoint(tmp_path / "run" / "checkpoint.npz")
    _, (x_test, y_test) = data
    set_bn_stats(model, "moving")
    _, moving_acc = evaluate(model, x_test, y_test)
    assert result["test_acc_moving"] == pytest.approx(moving_acc)
    set_bn_stats(model, bn_stats)
    loss, acc = evaluate(model, x_test, y_test)
    assert (result["test_loss"], result["test_acc"]) == (pytest.approx(loss), pytest.approx(acc))
    assert result["bn_stats"] == bn_stats and result["test_images"] == 50


def test_fit_is_train_step_in_a_loop_with_hooks():
    """fit = train_step per batch at the scheduled lr, hooks in order, records numbered from start."""
    from tinybin.train import fit

    (x, y), _ = tiny_data(40)
    batches = [(x[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]
    a, b = (wrn(8, 1, variant="baseline2", bits=1, rng=3) for _ in range(2))
    opt_a, opt_b = SGD(a.parameters(), lr=0.1), SGD(b.parameters(), lr=0.1)
    schedule = lambda step: 0.1 / (1 + step)  # noqa: E731
    events = []

    class Hook:
        def after_backward(self, model, logits, loss, labels):
            events.append(("backward", model.stem.weight.grad is not None, len(labels)))

        def after_step(self, model):
            events.append(("step",))

        def end_step(self, record):
            events.append(("end", record["step"]))

    watch = DivergenceDetector(10)
    records = fit(a, opt_a, iter(batches), schedule, steps=3, hooks=[Hook(), watch], start=5)
    # the record is fit's own: hooks read it and add nothing to it
    assert [set(r) for r in records] == [{"step", "lr", "loss", "acc", "images", "same_output"}] * 3
    assert [r["same_output"] for r in records] == [False] * 3 and watch.failure is None
    by_hand = [train_step(b, opt_b, xb, yb, schedule(5 + i)) for i, (xb, yb) in enumerate(batches[:3])]
    assert [r["step"] for r in records] == [5, 6, 7] and [r["lr"] for r in records] == [0.1 / 6, 0.1 / 7, 0.1 / 8]
    assert [r["loss"] for r in records] == [loss for loss, _ in by_hand]
    assert [r["acc"] for r in records] == [correct / 10 for _, correct in by_hand]
    assert events[:3] == [("backward", True, 10), ("step",), ("end", 5)] and len(events) == 9
    np.testing.assert_array_equal(a.stem.weight.data, b.stem.weight.data)


# ----- input_norm="fixed": statistics of the training images, frozen -------------------------------
def test_recalibration_leaves_a_frozen_input_bn_unchanged():
    model = wrn(8, 1, variant="baseline2", input_norm="fixed", rng=0)
    (x, y), _ = tiny_data(200, 1)
    model.input_bn.fit_statistics(x)
    before = model.input_bn.state_dict()
    batches = [(x[i:i + 100].astype(np.float32), y[i:i + 100]) for i in range(0, 200, 100)]
    assert recalibrate_bn(model, batches) == 2
    for name, value in model.input_bn.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    others = [bn for name, bn in model.batch_norms() if name != "input_bn"]
    assert others and all(int(bn.calib_batches) == 2 for bn in others)


def test_a_fixed_input_norm_run_stores_the_training_images_statistics(tmp_path):
    data = tiny_data(n_train=130, n_test=20)
    lines = []
    result = train(tiny_config(tmp_path, epochs=1, input_norm="fixed"), data=data, log=lines.append)
    rows = data[0][0].reshape(-1, 3).astype(np.float64)
    said = [l for l in lines if l.startswith("input normalisation: fixed")]
    assert len(said) == 1 and f"{rows.mean(0)[0]:.2f}" in said[0] and f"{rows.std(0)[2]:.2f}" in said[0]
    state, _, meta = read_checkpoint(tmp_path / "run")
    assert meta["config"]["input_norm"] == meta["arch"]["input_norm"] == "fixed"
    np.testing.assert_allclose(state["input_bn.calib_mean"], rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(state["input_bn.calib_var"], rows.var(0), rtol=1e-12)
    assert bool(state["input_bn.fitted"]) and "input_bn.weight" not in state
    model, _ = load_checkpoint(tmp_path / "run")
    assert model.input_bn.frozen
    np.testing.assert_array_equal(model.input_bn.calib_mean, state["input_bn.calib_mean"])
    assert evaluate(model, *data[1])[1] == pytest.approx(result["test_acc"])


def test_a_run_saved_before_input_norm_is_a_bn_run():
    """Old checkpoints have no input_norm in their config or arch: they load, and resume, as "bn"."""
    saved = {k: v for k, v in dataclasses.asdict(TrainConfig(epochs=2)).items() if k != "input_norm"}
    meta = dict(config=saved, epoch=1)
    assert resume_config(meta, {}).input_norm == "bn"
    with pytest.raises(ValueError, match=r"--input-norm fixed \(the run has bn\)"):
        resume_config(meta, {"input_norm": "fixed"})
    arch = TrainConfig().arch()
    del arch["input_norm"]
    assert wrn(**arch, rng=0).config["input_norm"] == "bn"


def test_the_eta_leaves_out_the_first_step_and_a_slow_one_is_named(monkeypatch):
    """The first step of a new machine compiles the kernels: the ETA is timed from its end, and a
    first step much slower than the rest is reported as compilation."""
    from tinybin.train import run as run_module

    clock = iter([0.0, 30.0, 31.0, 32.0, 33.0])          # began, then the end of each of 4 steps
    monkeypatch.setattr(run_module.time, "perf_counter", lambda: next(clock))
    seen = []

    class Bar:
        def update(self, step, epoch, loss, acc, rate, eta):
            seen.append((rate, eta))

    meter = run_module._Meter(epoch=0, total_steps=10, batch_size=100, progress=Bar())
    for step in range(4):
        meter.end_step(dict(step=step, lr=0.1, loss=2.0, acc=0.1, images=100))
    assert seen[0] == (None, None)                       # one step: no rate, no ETA
    assert seen[1] == (100.0, pytest.approx(8 * 100 / 100.0))   # 8 steps left at 100 images/s (after the first)
    assert seen[3][0] == 100.0
    assert meter.compile_seconds() == pytest.approx(29.0)       # 30 s against 1 s per step


def test_a_first_step_like_the_others_is_not_called_compilation(monkeypatch):
    from tinybin.train import run as run_module

    clock = iter([0.0, 1.1, 2.1, 3.1])
    monkeypatch.setattr(run_module.time, "perf_counter", lambda: next(clock))

    class Bar:
        def update(self, *args):
            pass

    meter = run_module._Meter(epoch=0, total_steps=3, batch_size=10, progress=Bar())
    for step in range(3):
        meter.end_step(dict(step=step, lr=0.1, loss=2.0, acc=0.1, images=10))
    assert meter.compile_seconds() is None
