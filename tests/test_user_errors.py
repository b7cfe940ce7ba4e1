"""A new user's mistakes, through the command line and the Python API: each gets one line naming
the flag, value or file (exit status 2, never a traceback), and nothing the user did not ask to
change is changed. Tiny runs: WRN-8-1 on an archive of 250 + 50 random images."""
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tinybin.export import save_packed
from tinybin.models import wrn
from tinybin.tensor import Tensor
from tinybin.train import TrainConfig, load_checkpoint, load_data, read_checkpoint, train

from conftest import cli, one_line, quiet, snapshot


def config(archive, out, **kw):
    return TrainConfig(**dict(dict(dataset="cifar10", archive=str(archive), subset=None, depth=8, width=1, epochs=1,
                                   epoch_eval_size=50, out=str(out)), **kw))


@pytest.fixture(scope="module")
def finished(archive, tmp_path_factory):
    """A run trained to its end (recalibrated BN statistics, final record, curves.png)."""
    out = tmp_path_factory.mktemp("runs") / "finished"
    train(config(archive, out), log=quiet)
    return out


@pytest.fixture(scope="module")
def stopped(archive, tmp_path_factory):
    """A run of 2 epochs stopped after the first: no recalibrated statistics yet."""
    out = tmp_path_factory.mktemp("runs") / "stopped"
    train(config(archive, out, epochs=2, stop_after=1), log=quiet)
    return out


# ----- data loss: a run is never replaced unless asked -------------------------------------------
def test_rerun_into_a_run_folder_is_refused_and_changes_nothing(finished, archive):
    before = snapshot(finished)
    line = one_line(cli("train", "--archive", archive, "--dataset", "cifar10", "--depth", 8, "--out", finished))
    assert str(finished) in line and "--resume" in line and "--overwrite" in line
    assert snapshot(finished) == before
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(config(archive, finished), log=quiet)
    assert snapshot(finished) == before


def test_overwrite_replaces_the_run(finished, archive, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    (out / "curves.png").write_bytes(b"stale")
    old = read_checkpoint(out)[2]
    proc = cli("train", "--archive", archive, "--dataset", "cifar10", "--subset", 0, "--depth", 8, "--epochs", 1,
               "--seed", 5, "--overwrite", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "1 epoch × 2 steps" in proc.stdout  # not "1 epochs"
    assert read_checkpoint(out)[2]["config"]["seed"] == 5 != old["config"]["seed"]
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_refuses_each_conflicting_flag(stopped):
    before = snapshot(stopped)
    line = one_line(cli("train", "--resume", "--out", stopped, "--depth", 14, "--variant", "srelu", "--seed", 0,
                        "--batch-size", 50, "--epochs", 3, "--input-norm", "fixed"))
    assert "--depth 14 (the run has 8)" in line and "--variant srelu (the run has baseline2)" in line
    assert "--input-norm fixed (the run has bn)" in line
    assert "--batch-size 50 (the run has 125)" in line
    assert "--seed" not in line and "--epochs" not in line  # the same seed; epochs may change
    assert snapshot(stopped) == before
    cfg = config("elsewhere", stopped, epochs=2, width=2)
    with pytest.raises(ValueError, match=r"--width 2 \(the run has 1\)"):
        train(cfg, resume=True, log=quiet)
    assert snapshot(stopped) == before


def test_resume_of_a_finished_run_says_how_to_train_on(finished):
    before = snapshot(finished)
    line = one_line(cli("train", "--resume", "--out", finished))
    assert "finished" in line and "--epochs" in line and "--overwrite" in line
    assert snapshot(finished) == before


def test_a_fixed_input_norm_run_evaluates_and_refuses_a_conflicting_resume(archive, tmp_path):
    """--input-norm fixed: the statistics of the raw training images, printed, stored in the checkpoint
    and used by evaluate; --resume with --input-norm bn is refused in one line, nothing changed."""
    out = tmp_path / "fixed"
    proc = cli("train", "--archive", archive, "--dataset", "cifar10", "--subset", 0, "--depth", 8, "--epochs", 2,
               "--stop-after", 1, "--input-norm", "fixed", "--out", out)
    assert proc.returncode == 0, proc.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the tiny archive is not the published one
        (x, _), _, _ = load_data(config(archive, out))
    rows = x.reshape(-1, 3).astype(np.float64)
    said = [line for line in proc.stdout.splitlines() if line.startswith("input normalisation: fixed")]
    assert len(said) == 1 and f"{rows.mean(0)[1]:.2f}" in said[0] and f"{rows.std(0)[0]:.2f}" in said[0], proc.stdout
    model, _ = load_checkpoint(out)
    assert model.input_bn.frozen and model.config["input_norm"] == "fixed"
    np.testing.assert_allclose(model.input_bn.calib_mean, rows.mean(0), rtol=1e-12)
    np.testing.assert_allclose(model.input_bn.calib_var, rows.var(0), rtol=1e-12)
    evaluated = cli("evaluate", out)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "fixed input norm" in evaluated.stdout and "test accuracy" in evaluated.stdout
    before = snapshot(out)
    line = one_line(cli("train", "--resume", "--out", out, "--input-norm", "bn"))
    assert "--input-norm bn (the run has fixed)" in line and "--overwrite" in line
    assert snapshot(out) == before


def test_help_says_which_flags_may_change_on_resume():
    text = " ".join(cli("train", "--help").stdout.split())
    assert "only --epochs" in text and "--overwrite" in text


# ----- values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--lr", -1), ("--lr", 0), ("--momentum", 1), ("--momentum", -0.5),
                                        ("--weight-decay", -1e-4), ("--epochs", 0), ("--batch-size", 0)])
def test_bad_values_name_their_own_flag(flag, value, tmp_path):
    line = one_line(cli("train", flag, value, "--out", tmp_path / "r"))
    others = {"--lr", "--momentum", "--weight-decay", "--epochs", "--batch-size"} - {flag}
    assert f"{flag} {value:g}" in line and not any(f"{o} " in line for o in others), line
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match=flag):
        TrainConfig(**{flag[2:].replace("-", "_"): value}).validate()


@pytest.mark.parametrize("args,said", [
    (["--variant", "srelu", "--temperature", "inf"], "--temperature inf cannot work: it must be a finite number above 0"),
    (["--variant", "srelu", "--temperature", "nan"], "--temperature nan cannot work"),
    (["--variant", "srelu", "--temperature", "0"], "--temperature 0 cannot work"),
    (["--subset", "-1"], "--subset -1 cannot work: it must be 0 (all) or more"),
    (["--test-subset", "-5"], "--test-subset -5 cannot work"),
    (["--epoch-eval-size", "-2"], "--epoch-eval-size -2 cannot work"),
    (["--subset", "7"], "--subset 7 is fewer images than the 10 classes: give at least 10"),
    (["--subset", "500", "--batch-size", "100000"], "--batch-size 100000 is larger than the 500 training images"),
])
def test_values_that_would_run_but_mean_nothing_are_refused(args, said, archive, tmp_path):
    if "--subset" in args and "-1" not in args:  # the shipped subset: 4000 images of 10 classes
        line = one_line(cli("train", *args, "--depth", 8, "--out", tmp_path / "r"))
    else:
        line = one_line(cli("train", "--dataset", "cifar10", "--archive", archive, *args, "--depth", 8,
                            "--out", tmp_path / "r"))
    assert said in line, line
    assert not (tmp_path / "r").exists()


def test_value_checks_are_in_the_shared_config(archive):
    """TrainConfig.validate and load_data, which the PyTorch trainer uses too, refuse them."""
    for bad in (dict(variant="srelu", temperature=float("inf")), dict(subset=-1), dict(test_subset=-1)):
        with pytest.raises(ValueError, match="cannot work"):
            TrainConfig(**bad).validate()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="--subset 7 is fewer images than the 10 classes"):
            load_data(config(archive, "x", subset=7))
        with pytest.raises(ValueError, match="--batch-size 251 is larger than the 250 training images"):
            load_data(config(archive, "x", batch_size=251))
        (_, y), _, _ = load_data(config(archive, "x", subset=10, batch_size=10))  # the least that works
        assert np.bincount(y, minlength=10).tolist() == [1] * 10


def test_nchw_input_is_named():
    model = wrn(8, 1, rng=0)
    with pytest.raises(ValueError, match=r"NCHW.*transpose"):
        model(np.zeros((2, 3, 32, 32), np.float32))


def test_images_in_zero_one_warn_once():
    model = wrn(8, 1, rng=0).eval()
    x = np.random.default_rng(0).random((2, 32, 32, 3))
    with pytest.warns(UserWarning, match="0..255"):
        model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(x)  # once per model
        model(255 * x)


def test_second_backward_through_a_freed_graph_raises():
    x = Tensor(np.arange(3.0), requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        loss.backward()
    shared = x * 2                     # a subgraph used by two losses, backward through the first
    (shared * 3).sum().backward()
    with pytest.raises(RuntimeError, match="already freed"):
        (shared * 5).sum().backward()
    x.grad = None
    (x * 4).sum().backward()           # a leaf is never freed: a new forward works
    np.testing.assert_array_equal(x.grad, [4.0, 4.0, 4.0])


# ----- damaged and foreign files ----------------------------------------------------------------------
def test_truncated_and_random_checkpoints_are_one_line(finished, tmp_path):
    data = (finished / "checkpoint.npz").read_bytes()
    for name, payload in [("truncated", data[:len(data) // 2]),
                          ("random", np.random.default_rng(0).bytes(4000))]:
        path = tmp_path / name / "checkpoint.npz"
        path.parent.mkdir()
        path.write_bytes(payload)
        for args in (("evaluate", path), ("train", "--resume", "--out", path.parent)):
            line = one_line(cli(*args))
            assert str(path) in line and "not a tinybin checkpoint" in line
            assert "allow_pickle" not in line
        assert path.read_bytes() == payload
        with pytest.raises(ValueError, match="not a tinybin checkpoint") as info:
            read_checkpoint(path)
        assert "allow_pickle" not in str(info.value)


def test_a_pickled_object_in_an_npz_is_never_loaded(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, meta=np.array([{"a": 1}], dtype=object))
    line = one_line(cli("evaluate", path))
    assert "Python objects" in line and "allow_pickle" not in line


def test_recalibrated_statistics_of_a_stopped_run(stopped):
    before = snapshot(stopped)
    line = one_line(cli("evaluate", stopped, "--bn-stats", "recalibrated"))
    assert "never computed" in line and "epoch 1 of 2" in line
    assert "--bn-stats moving" in line and "--resume" in line
    ok = cli("evaluate", stopped)
    assert ok.returncode == 0, ok.stderr
    assert "BN statistics: moving averages" in ok.stdout
    assert snapshot(stopped) == before


def test_evaluate_says_which_statistics(finished):
    proc = cli("evaluate", finished)
    assert proc.returncode == 0, proc.stderr
    assert "BN statistics: recalibrated" in proc.stdout
    proc = cli("evaluate", finished, "--bn-stats", "moving")
    assert "BN statistics: moving averages" in proc.stdout


def test_evaluate_a_packed_export(finished, tmp_path):
    model, _ = load_checkpoint(finished)
    save_packed(model, tmp_path / "model.npz")
    proc = cli("evaluate", tmp_path / "model.npz", "--archive", read_checkpoint(finished)[2]["config"]["archive"])
    assert proc.returncode == 0, proc.stderr
    assert "model.npz" in proc.stdout and "test accuracy" in proc.stdout and "on 50 images" in proc.stdout


def test_a_packed_export_says_which_bn_statistics_it_holds(finished, stopped, tmp_path):
    """export records the statistics it packed; evaluate reports them and accepts exactly those."""
    archive = read_checkpoint(finished)[2]["config"]["archive"]
    accuracy = lambda proc: re.search(r"test accuracy ([\d.]+ %)", proc.stdout).group(1)
    for run, held, other in ((finished, "recalibrated", "moving"), (stopped, "moving", "recalibrated")):
        packed = tmp_path / f"{run.name}.npz"
        exported = cli("export", run, "--out", packed)
        assert exported.returncode == 0, exported.stderr
        shown = "moving averages" if held == "moving" else held
        assert f"of BN statistics ({shown})" in exported.stdout
        reference = cli("evaluate", run, "--archive", archive)
        for asked in ([], ["--bn-stats", held]):
            proc = cli("evaluate", packed, "--archive", archive, *asked)
            assert proc.returncode == 0, proc.stderr
            assert f"BN statistics: {shown} (packed)" in proc.stdout
            assert accuracy(proc) == accuracy(reference)  # the statistics it says are the ones it used
        line = one_line(cli("evaluate", packed, "--archive", archive, "--bn-stats", other))
        assert f"holds only the {shown} BN statistics" in line and f"--bn-stats {other}" in line


# ----- Ctrl-C ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("where,args", [("tinybin.cli.train.load_data", ["train", "--depth", "8"]),
                                        ("tinybin.cli.evaluate.evaluate", ["evaluate", "RUN"])])
def test_ctrl_c_is_one_line_and_status_130(where, args, finished, tmp_path):
    """Ctrl-C while the data loads (train) or while the model is tested (evaluate)."""
    module, name = where.rsplit(".", 1)
    args = [str(finished) if a == "RUN" else a for a in args]
    if args[0] == "train":
        args += ["--out", str(tmp_path / "r")]
    code = (f"import sys, importlib\nm = importlib.import_module({module!r})\n"
            f"def interrupt(*a, **k): raise KeyboardInterrupt\nsetattr(m, {name!r}, interrupt)\n"
            f"from tinybin.cli import main\nsys.exit(main({args!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    # the tiny archive's checksum warning may come first (evaluate reads it before testing)
    assert [line for line in proc.stderr.splitlines() if not line.startswith("warning: ")] == ["interrupted"]


# ----- what --help shows ------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["export"], ["bench"], ["bench", "conv"],
                                     ["bench", "data"], ["bench", "train"], ["bench", "infer"]])
def test_help_shows_each_default_once(command):
    proc = cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "(default: None)" not in text and "(default: False)" not in text
    for entry in text.split("--")[1:]:
        assert entry.lower().count("default") <= 1, entry
    if command == ["evaluate"]:
        for flag in ("--data-dir DATA_DIR", "--archive ARCHIVE", "--batch-size BATCH_SIZE"):
            assert len(text.split(flag)[-1].split("--")[0].split()) > 2, flag  # has a help text
    if command[:1] == ["bench"] and command[1:]:  # the description (its tables) keeps its lines
        import importlib

        doc = importlib.import_module(f"tinybin.bench.{command[1]}").__doc__
        shown = set(proc.stdout.splitlines())
        assert all(line in shown for line in doc.strip().splitlines() if line.strip())


# ----- what curves.png shows ----------------------------------------------------------------------------
def test_curves_show_the_final_accuracy_and_the_divergence(tmp_path, monkeypatch):
    """A 3-epoch run whose curve shows 21 % (moving averages) but which reports 40 % (recalibrated)."""
    import json

    from tinybin.figures import pyplot
    from tinybin.train import plot_curves

    plt, figures = pyplot(), []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to read it
    records = [dict(kind="epoch", epoch=e, step=10 * e, train_acc=0.1 * e, test_acc=0.07 * e, test_loss=2.0)
               for e in (1, 2, 3)]
    records += [dict(kind="diverged", step=25, loss=1e12, reason="exploded"),
                dict(kind="final", test_acc=0.40, test_acc_moving=0.21, bn_stats="recalibrated")]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(dict(step=s, loss=2.3)) + "\n" for s in range(30)))
    plot_curves(tmp_path, "WRN-8-1 srelu, T=40, 1-bit")
    fig = figures[0]
    legends = [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    assert "final, recalibrated BN: 40.0 %" in legends and "final, moving-average BN: 21.0 %" in legends
    assert "diverged (exploded)" in legends
    assert fig._suptitle.get_text().startswith("WRN-8-1 srelu, T=40, 1-bit")
    lo, hi = fig.axes[1].get_xlim()
    assert all(t == int(t) for t in fig.axes[1].get_xticks() if lo <= t <= hi)
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
