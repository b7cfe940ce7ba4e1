"""`python -m tinybin`: help with defaults, one-line errors, a tiny train → evaluate round trip."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from archives import cifar10_archive


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinybin", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_line_error(proc):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_archive(tmp_path_factory):
    """A CIFAR-10 archive in the official layout (Python-2 style pickles) with 250 + 50 random images."""
    path, _ = cifar10_archive(tmp_path_factory.mktemp("data") / "tiny-cifar-10.tar.gz", sizes=(250,), n_test=50)
    return path


def test_help_lists_commands_and_shows_defaults():
    top = run("--help")
    assert top.returncode == 0
    for command in ("train", "evaluate", "bench", "export"):
        assert command in top.stdout
    train = run("train", "--help")
    assert train.returncode == 0
    text = " ".join(train.stdout.split())
    for flag, default in [("--lr", "0.1"), ("--batch-size", "125"), ("--cutout", "18"), ("--depth", "20"),
                          ("--variant", "baseline2"), ("--bits", "1")]:
        assert flag in text and f"(default: {default})" in text


@pytest.mark.parametrize("args,message", [
    (["--variant", "no-bn"], "valid: baseline1, baseline2, final-bn, srelu, elu, mean-bn"),
    (["--depth", "21"], "6n+2"),
    (["--bits", "8"], "bits"),
    (["--variant", "baseline2", "--temperature", "40"], "temperature"),
    (["--archive", "/nonexistent/cifar.tar.gz"], "/nonexistent/cifar.tar.gz"),
    (["--dataset", "folder", "--data-dir", "/nonexistent"], "/nonexistent"),
])
def test_bad_flags_give_one_line_and_nonzero_exit(args, message, tmp_path):
    line = one_line_error(run("train", *args, "--out", tmp_path / "r"))
    assert message in line


def test_missing_data_without_network_is_one_line(tmp_path, monkeypatch):
    proc = subprocess.run([sys.executable, "-c", "import sys, urllib.request\n"
                           "def fail(*a, **k): raise OSError('no network in this test')\n"
                           "urllib.request.urlopen = fail\n"
                           "from tinybin.cli import main; sys.exit(main(sys.argv[1:]))",
                           "train", "--dataset", "cifar10", "--data-dir", str(tmp_path / "empty"),
                           "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    line = one_line_error(proc)
    assert "cifar-10-python.tar.gz" in line and str((tmp_path / "empty").resolve()) in line
    assert "archive=" not in line  # a command-line user is told about flags, not Python keywords


def test_resume_without_checkpoint(tmp_path):
    assert "nothing to resume" in one_line_error(run("train", "--resume", "--out", tmp_path / "none"))


def test_evaluate_missing_checkpoint(tmp_path):
    assert "no checkpoint" in one_line_error(run("evaluate", tmp_path / "nothing.npz"))


def test_train_then_evaluate(tiny_archive, tmp_path):
    out = tmp_path / "run"
    proc = run("train", "--archive", tiny_archive, "--subset", 0, "--depth", 8, "--width", 1, "--epochs", 1,
               "--variant", "srelu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "T=40" in proc.stdout  # the default temperature is announced
    acc = re.search(r"test accuracy: ([\d.]+) % on 50 images", proc.stdout)
    assert acc, proc.stdout
    assert (out / "checkpoint.npz").is_file() and (out / "metrics.jsonl").is_file()
    ev = run("evaluate", out / "checkpoint.npz")
    assert ev.returncode == 0, ev.stderr
    assert f"test accuracy {acc.group(1)} % on 50 images" in ev.stdout


def test_divergence_exits_nonzero_with_message(tiny_archive, tmp_path):
    out = tmp_path / "div"
    proc = run("train", "--archive", tiny_archive, "--subset", 0, "--depth", 8, "--width", 1, "--epochs", 2,
               "--variant", "srelu", "--temperature", 40, "--lr", 100, "--out", out)
    assert proc.returncode == 3
    assert re.search(r"diverged at step \d+ \(loss=", proc.stderr)
    assert "Traceback" not in proc.stderr
    assert (out / "checkpoint.npz").is_file() and (out / "metrics.jsonl").is_file()


def test_bench_train_quick():
    proc = run("bench", "train", "--quick", "--depth", 8, "--configs", "1:baseline2,1:srelu", "--batch-size", 16)
    assert proc.returncode == 0, proc.stderr
    assert "WRN-8-1 srelu" in proc.stdout and "step/conv" in proc.stdout and "peak memory" in proc.stdout


def test_bench_ops_times_every_op_of_a_step():
    proc = run("bench", "ops", "--depth", 8, "--configs", "1:baseline2", "--batch-size", 8, "--steps", 1,
               "--warmup", 0)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.startswith("  ")}
    assert rows["Conv2d"][1] == "8"                  # stem, 3 blocks × 2, head: 8 convolutions per step
    assert {"BatchNormAct", "AvgPool2d", "CrossEntropy", "(rest)"} <= set(rows)  # BN + ReLU fused
    shares = [float(r[-1].rstrip("%")) for name, r in rows.items() if name not in ("op", "(rest)")]
    assert 0 < sum(shares) <= 100.5


def test_bench_ops_profile_restores_the_ops():
    from tinybin.bench import ops
    from tinybin.ops.conv import Conv2d

    forward = Conv2d.__dict__["forward"]
    r = ops.profile(width=1, variant="srelu", depth=8, batch_size=4, steps=2, warmup=0)
    assert Conv2d.__dict__["forward"] is forward
    # the 7 sReLUs (6 in blocks, the head's) are folded into the convs they feed (models.wrn.unit_conv)
    assert r["ops"]["Conv2d"]["calls"] == 8 and "SReLU" not in r["ops"] and r["ops"]["Scale"]["calls"] == 1
    assert all(o["fwd_ms"] >= 0 and o["bwd_ms"] >= 0 for o in r["ops"].values())
    assert sum(o["fwd_ms"] + o["bwd_ms"] for o in r["ops"].values()) <= r["step_ms"]


def test_bench_ops_refuses_bad_counts():
    line = one_line_error(run("bench", "ops", "--steps", 0))
    assert "--steps" in line and "0" in line


def test_bench_train_names_a_bad_config():
    line = one_line_error(run("bench", "train", "--configs", "1:srelu,4:nope"))
    assert "--configs" in line and "'4:nope'" in line


def test_bench_vs_torch_without_torch_says_how_to_get_it(tmp_path):
    """PyTorch absent (a stand-in package whose import fails): one line naming the extra."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('No module named torch')\n")
    proc = subprocess.run([sys.executable, "-m", "tinybin", "bench", "train", "--vs-torch", "--quick"],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "tinybin[torch]" in one_line_error(proc)


@pytest.mark.torch
def test_bench_vs_torch_prints_every_engine_the_loads_and_the_targets():
    pytest.importorskip("torch", reason="PyTorch is the optional extra tinybin[torch]")
    proc = run("bench", "train", "--vs-torch", "--quick", "--depth", 8, "--configs", "1:baseline2", "--batch-size", 16)
    assert proc.returncode == 0, proc.stderr
    assert "median of 2 steps after 1 warm-up, 1 round(s), PyTorch kinds bridge-nchw,bridge-cl,plain-cl" in proc.stdout
    row = next(l for l in proc.stdout.splitlines() if l.startswith("WRN-8-1 baseline2"))
    tinybin, *peers, ratio = row.split()[2:7]
    assert min(float(tinybin), *map(float, peers)) > 0 and len(peers) == 3
    assert float(ratio.rstrip("x")) == pytest.approx(float(tinybin) / max(map(float, peers)), rel=0.02)
    tokens = row.split()                                                   # ... load "a–b", steal "n %" or "n/a"
    load = tokens[-2] if tokens[-1] == "n/a" else tokens[-3]
    low, high = map(float, load.split("–"))
    assert 0 <= low <= high and (tokens[-1] == "n/a" or (tokens[-1] == "%" and 0 <= float(tokens[-2]) <= 100))
    assert "target WRN-8-1 baseline2 >= 1.05x the best PyTorch" in proc.stdout
    assert "target WRN-8-1 baseline2 peak memory <= the fastest PyTorch's" in proc.stdout


def test_bench_vs_torch_names_a_bad_peer_kind():
    line = one_line_error(run("bench", "train", "--vs-torch", "--peers", "plain-cl,gpu"))
    assert "--peers" in line and "'gpu'" in line


def test_bench_vs_torch_names_a_bad_count():
    for flag in ("--rounds", "--steal-retries"):
        line = one_line_error(run("bench", "train", "--vs-torch", flag, -1))
        assert flag in line and "-1" in line


def test_bench_conv_prints_every_stage():
    proc = run("bench", "conv", "--batch", 2, "--repeats", 1, "--ref-repeats", 1, "--no-startup")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"kernels (parallel on \d+ threads|serial)", proc.stdout)
    for stage in ("32x32x64", "16x16x128", "8x8x256"):
        row = next(line for line in proc.stdout.splitlines() if line.split()[:1] == [stage])
        numbers = [float(v.rstrip("x")) for v in row.split()[1:]]
        # times are positive; a ratio printed to one decimal can round to 0.0 on a loaded machine
        assert len(numbers) == 13 and all(v >= 0 for v in numbers) and numbers[0] > 0 and numbers[1] > 0


def test_train_on_the_shipped_subset_by_default(tmp_path):
    """No data flag: the 4000 + 1000 exact CIFAR-10 images shipped in datasets/, no network and no
    checksum warning; a class-balanced subset of 250 for speed."""
    proc = run("train", "--subset", 250, "--depth", 8, "--epochs", 1, "--test-subset", 200, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr and "MD5" not in proc.stderr, proc.stderr
    assert "250 training / 200 test images" in proc.stdout
    assert re.search(r"test accuracy: [\d.]+ % on 200 images", proc.stdout)


def test_train_on_an_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for part, n in (("train", 20), ("test", 6)):
        for cls in ("cat", "dog", "frog"):
            (tmp_path / "imgs" / part / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / part / cls / f"{i}.png")
    proc = run("train", "--dataset", "folder", "--data-dir", tmp_path / "imgs", "--subset", 0, "--depth", 8,
               "--epochs", 1, "--batch-size", 20, "--variant", "final-bn", "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert "60 training / 18 test images" in proc.stdout
    assert re.search(r"test accuracy: [\d.]+ % on 18 images", proc.stdout)


def test_bench_data_quick_exits_zero():
    proc = run("bench", "data", "--images", "2000", "--repeat", "1", "--no-folder")
    assert proc.returncode == 0, proc.stderr
    assert "images/s" in proc.stdout
