"""tinybin.torch: the WRN in PyTorch computes what tinybin computes; state goes both ways;
data-parallel training equals one process on the global batch.

Exactness: float64, "relative" means max |a − b| / max |b| over the whole tensor.
Needs PyTorch (pip install '.[torch]'); without it every test here skips with that reason.
"""
import json
import os
import subprocess
import sys
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
    """BatchNorm2d.native (PyTorch's fused kernel, the benchmark's peer) is the same function in
    float64: logits, every gradient, and the moving averages it records."""
    from tinybin.torch.layers import BatchNorm2d
    x = test_images[0][:8].astype(np.float64)
    upstream = torch.from_numpy(np.random.default_rng(1).standard_normal((8, 10)))
    model = small_model(variant, 1, "symmetric")
    runs, calls, fused = [], [], torch.nn.functional.batch_norm
    monkeypatch.setattr(torch.nn.functional, "batch_norm", lambda *a, **k: calls.append(1) or fused(*a, **k))
    for native in (False, True):
        monkeypatch.setattr(BatchNorm2d, "native", native)
        net = to_torch(model)
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


# ------------------------------------------------------------------------ data-parallel training


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
    torchrun's own log lines and failure report (which has a traceback of its own)."""
    return [l for l in text.splitlines() if l.startswith(("error:", "warning:", "diverged")) or "tinybin/" in l]


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
    assert not [l for l in our_lines(stderr) if "tinybin/" in l], stderr     # no traceback of ours
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
