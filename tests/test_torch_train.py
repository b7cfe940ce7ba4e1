"""tinybin.torch.train: tinybin's run on PyTorch — data-parallel training equals one process on
the global batch; the same flags, errors, resume and logs as `python -m tinybin train`; under
torchrun, flags checked first and a killed process reported in one line.

Needs PyTorch (pip install '.[torch]'); without it every test here skips with that reason.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed: pip install '.[torch]' runs these tests")

from tinybin.models import wrn  # noqa: E402

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = str(Path(sys.modules["tinybin"].__file__).resolve().parent)   # where a traceback of ours points
ARCHIVE = ROOT / "datasets" / "cifar-10-subset-python.tar.gz"


def rel(a, b):
    """max |a − b| / max |b| over the whole tensor."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def run_train(tmp_path, name, variant, nproc):
    """One epoch of one step of 128 images (WRN-8-1) by `python -m tinybin.torch.train`, under
    torchrun with `nproc` gloo processes (2 × 64 images) or in one process."""
    out = tmp_path / name
    flags = ["--archive", str(ARCHIVE), "--subset", "128", "--batch-size", "128", "--epochs", "1", "--depth", "8",
             "--variant", variant, "--test-subset", "100", "--epoch-eval-size", "100", "--out", str(out)]
    if variant == "srelu":
        flags += ["--temperature", "40"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc else [sys.executable]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launcher + ["-m", "tinybin.torch.train"] + flags, capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


@pytest.mark.parametrize("variant", ["srelu", "baseline2"])
def test_ddp_step_equals_single_process_step(tmp_path, variant):
    """2 gloo processes × 64 images = 1 process × 128 images, to float32 tolerance: weights, SGD
    velocities and BN statistics (moving and recalibrated: BN sees the global batch). The run
    folder is tinybin's: `python -m tinybin evaluate` reads it and gets the run's own accuracy
    (checked once, for baseline2, whose BN statistics it must also read)."""
    ddp, log = run_train(tmp_path, "ddp", variant, nproc=2)
    single, _ = run_train(tmp_path, "single", variant, nproc=0)
    assert "PyTorch, 2 processes, cpu" in log.splitlines()[0]
    with np.load(ddp / "checkpoint.npz") as a, np.load(single / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        arrays = [k for k in a.files if k != "meta"]
        assert any(k.startswith("optim/velocity") for k in arrays)
        for k in arrays:
            assert rel(a[k], b[k]) < 1e-4, k
        start = wrn(8, 1, variant=variant, bits=1, temperature=40 if variant == "srelu" else None, rng=0)
        assert rel(a["model/stem.weight"], start.stem.weight.data) > 1e-6   # it did take a step
    if variant != "baseline2":
        return
    done = subprocess.run([sys.executable, "-m", "tinybin", "evaluate", str(ddp), "--test-subset", "100"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    accuracy = log.strip().splitlines()[-1].split("test accuracy: ")[1].split(" %")[0]
    assert f"test accuracy {accuracy} % on 100 images" in done.stdout


@pytest.mark.parametrize("flags, message", [
    (["--variant", "nope"], "unknown variant 'nope'"),
    (["--depth", "9"], "depth must be 6n+2"),
    (["--batch-size", "0"], "--batch-size 0 cannot work"),
    (["--bn-stats", "both"], "invalid choice: 'both'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--archive", "/nonexistent/cifar.tar.gz"], "/nonexistent/cifar.tar.gz"),
    (["--resume"], "nothing to resume"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--backend", "nccl", "--device", "cpu"], "--"),
])
def test_bad_flags_give_one_line_and_exit_2(flags, message, capsys, tmp_path):
    from tinybin.torch.train import main

    assert main(flags + ["--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err


def test_help_shows_tinybins_flags_with_defaults_and_the_pytorch_ones(capsys):
    from tinybin.torch.train import main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--resume", "--input-norm", "--stop-after", "--keep-going", "--device", "--backend"):
        assert flag in text, flag
    assert "(default: cifar10-subset)" in text and "(default: 20)" in text and "-torch" in text


def torch_train(*flags):
    """`python -m tinybin.torch.train` in this process; (exit status, stderr lines)."""
    import contextlib
    import io

    from tinybin.torch.train import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main([str(f) for f in flags])
    return status, err.getvalue().splitlines()


def test_resume_continues_a_run_bit_identically(tmp_path, monkeypatch):
    """On the shipped subset (the default dataset): 2 epochs straight == 1 epoch, stop, --resume
    for the second (no --overwrite): same weights, velocities, BN statistics and step losses; the
    log records the resume."""
    monkeypatch.chdir(ROOT)
    flags = ["--subset", 100, "--batch-size", 50, "--depth", 8, "--epochs", 2, "--test-subset", 50,
             "--epoch-eval-size", 50]
    assert torch_train(*flags, "--out", tmp_path / "straight") == (0, [])
    assert torch_train(*flags, "--stop-after", 1, "--out", tmp_path / "split") == (0, [])
    assert torch_train("--resume", "--out", tmp_path / "split") == (0, [])
    with np.load(tmp_path / "straight" / "checkpoint.npz") as a, np.load(tmp_path / "split" / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            if k != "meta":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    read = lambda name, log: [json.loads(l) for l in (tmp_path / name / log).read_text().splitlines()]  # noqa: E731
    assert [r["loss"] for r in read("straight", "steps.jsonl")] == [r["loss"] for r in read("split", "steps.jsonl")]
    assert [r["kind"] for r in read("split", "metrics.jsonl")] == ["epoch", "resumed", "epoch", "final"]
    assert (tmp_path / "split" / "curves.png").stat().st_size > 1000


def test_a_diverged_run_says_so_and_exits_3(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    status, err = torch_train("--subset", 100, "--batch-size", 50, "--depth", 8, "--epochs", 2, "--variant", "srelu",
                              "--temperature", 40, "--lr", 1000, "--test-subset", 50, "--out", tmp_path / "run")
    assert status == 3 and len(err) == 1 and err[0].startswith("diverged at step"), err


# ----- under torchrun: flags checked first, a killed process, --resume --------------------------------
def torchrun(*flags, nproc=2):
    """`torchrun --nproc_per_node nproc -m tinybin.torch.train flags` (gloo on the CPU), started."""
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                             "-m", "tinybin.torch.train", *map(str, flags)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def our_lines(text):
    """What the processes printed (messages, or a traceback through tinybin's files), without
    torchrun's own log lines and failure report (which has a traceback of its own; a checkout
    folder named tinybin appears in its paths too, so a traceback line is matched by the package's path)."""
    return [l for l in text.splitlines() if l.startswith(("error:", "warning:", "diverged")) or f'"{PACKAGE}/' in l]


def test_under_torchrun_a_bad_flag_is_one_line_from_rank_0():
    done = torchrun("--depth", "9", "--out", "runs/never")
    out, err = done.communicate(timeout=300)
    assert done.returncode != 0
    assert our_lines(out + err) == ["error: depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...), got 9"], err
    assert not (ROOT / "runs" / "never").exists()


def _worker(parent, rank):
    """The pid of the torchrun worker with that rank (a child of the torchrun process)."""
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().split(")")[-1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_killed_process_ends_the_others_with_one_line_and_the_run_resumes_under_torchrun(tmp_path):
    """Rank 1 killed (SIGKILL) after an epoch: rank 0 stops with one line naming rank 1; the
    checkpoint of the last finished epoch is kept, and torchrun --resume (no --overwrite) ends the run."""
    import signal
    import time

    out = tmp_path / "run"
    run = torchrun("--archive", ARCHIVE, "--subset", 100, "--batch-size", 50, "--depth", 8, "--epochs", 40,
                   "--test-subset", 50, "--epoch-eval-size", 50, "--out", out)
    deadline = time.time() + 300
    while not ((out / "metrics.jsonl").exists() and '"epoch"' in (out / "metrics.jsonl").read_text()):
        assert run.poll() is None and time.time() < deadline, run.communicate()
        time.sleep(0.1)
    os.kill(_worker(run.pid, 1), signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode != 0
    errors = [l for l in our_lines(stderr) if l.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: rank 1 ended") and "--resume" in errors[0], stderr
    assert not [l for l in our_lines(stderr) if PACKAGE in l], stderr     # no traceback of ours
    with np.load(out / "checkpoint.npz") as f:
        done = json.loads(str(f["meta"]))["epoch"]
    assert 1 <= done < 40 and f"holds epoch {done}" in errors[0]

    resumed = torchrun("--resume", "--epochs", done + 1, "--out", out)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"resumed {out}/checkpoint.npz at epoch {done}/{done + 1}" in stdout
    assert stdout.strip().splitlines()[-1].startswith("test accuracy: ")
    kinds = [json.loads(l)["kind"] for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert kinds[-3:] == ["resumed", "epoch", "final"] and kinds.count("epoch") == done + 1
