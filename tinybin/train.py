"""Training: the loop of METHOD.md §5, evaluation, BN recalibration, checkpoints and metrics.

    from tinybin.train import TrainConfig, train
    result = train(TrainConfig(width=1, variant="srelu", epochs=10, dataset="cifar10-subset"))

One run writes into `out/`:
    checkpoint.npz   model + optimizer + epoch/step/config, rewritten atomically after each epoch
                     (and once before the first, so a run that diverges at once still has one)
    metrics.jsonl    one JSON record per epoch (+ "final" and "diverged" records)
    steps.jsonl      one record per training step: step, epoch, lr, loss, acc
    curves.png       loss and accuracy curves

Reproducibility: the initial weights come from `seed`, and everything random in epoch e (order,
augmentation) from (seed, e) alone (tinybin.data.Batches). A resumed run therefore sees the same
batches, learning rates and momentum as an uninterrupted one and ends with identical weights.

Divergence: a BN-free net at lr 0.1 can reach losses of 1e10–1e17 within a few steps without
ever producing NaN, and then sit "dead" at chance. So besides a non-finite loss, a loss far
above its start (`explode_factor` × max(first loss, ln C)) and a constant loss at chance
accuracy count as divergence: the run stops with "diverged at step N (loss=...)", keeping its
metrics and its last good checkpoint (`on_diverge="continue"` watches it run on instead).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import functional as F
from . import nn
from .data.subset import stratified_sample
from .models import wrn
from .models.wrn import VARIANTS, default_temperature
from .nn.module import save_npz
from .optim import SGD, Schedule
from .tensor import no_grad

DATASETS = ("cifar10-subset", "cifar10", "cifar100", "folder")


@dataclass
class TrainConfig:
    """Everything that defines a run (the CLI flags of `python -m tinybin train`)."""
    dataset: str = "cifar10-subset"   # cifar10-subset (shipped) | cifar10 | cifar100 | folder
    data_dir: str | None = None       # archive cache folder, or for "folder" a root with train/ and test/
    archive: str | None = None        # an archive in the official CIFAR layout
    subset: int | None = 4000         # class-balanced training subset (None or 0: all)
    test_subset: int | None = None    # N test images, every class in proportion (None: all)
    epoch_eval_size: int | None = 1000  # test images evaluated after each epoch (the final one uses all)
    depth: int = 20
    width: int = 1
    variant: str = "baseline2"
    bits: int = 1
    temperature: float | None = None
    padding: str = "symmetric"
    epochs: int = 20
    lr: float = 0.1
    lr_min: float = 1e-5
    schedule: str = "cosine"          # cosine (P2) | restarts (P1) | constant
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 125
    flip: bool = True
    crop_pad: int = 4
    cutout: int = 18
    bn_stats: str = "recalibrated"    # inference BN statistics at the end: recalibrated | moving
    seed: int = 0
    out: str | None = None            # run folder; default runs/wrn<depth>-<width>-<variant>-<bits>bit-seed<seed>
    stop_after: int | None = None     # stop this invocation after that many epochs (resume later)
    on_diverge: str = "stop"          # stop | continue
    explode_factor: float = 100.0
    dead_window: int = 50

    def run_dir(self) -> Path:
        if self.out:
            return Path(self.out)
        return Path("runs") / f"wrn{self.depth}-{self.width}-{self.variant}-{self.bits}bit-seed{self.seed}"

    def arch(self) -> dict:
        return dict(depth=self.depth, width=self.width, variant=self.variant, bits=self.bits,
                    temperature=self.temperature, padding=self.padding)


class Diverged(RuntimeError):
    """Raised by `train` when the loss is non-finite, explodes, or dies (see the module docstring)."""

    def __init__(self, step, loss, reason, out=None):
        self.step, self.loss, self.reason, self.out = step, loss, reason, out
        super().__init__(f"diverged at step {step} (loss={loss:.4g}{'' if reason == 'exploded' else ', ' + reason})")


# --------------------------------------------------------------------------------- data


def load_data(cfg: TrainConfig):
    """((x_train, y_train), (x_test, y_test), class_names) for cfg.dataset, subset applied.

    Raises FileNotFoundError / ValueError / tinybin.data errors with a one-line message.
    """
    from . import data

    if cfg.dataset == "cifar10-subset" and cfg.archive is None:
        (xtr, ytr), (xte, yte) = data.load_cifar10_subset(data_dir=cfg.data_dir)
        names = None
    elif cfg.dataset in ("cifar10", "cifar10-subset"):
        (xtr, ytr), (xte, yte) = data.load_cifar10(data_dir=cfg.data_dir, archive=cfg.archive)
        names = None
    elif cfg.dataset == "cifar100":
        (xtr, ytr), (xte, yte) = data.load_cifar100(data_dir=cfg.data_dir, archive=cfg.archive)
        names = None
    elif cfg.dataset == "folder":
        if cfg.data_dir is None:
            raise ValueError("--dataset folder needs --data-dir DIR holding DIR/train/<class>/ and DIR/test/<class>/")
        root = Path(cfg.data_dir)
        for part in ("train", "test"):
            if not (root / part).is_dir():
                raise FileNotFoundError(f"{root / part} does not exist (--dataset folder expects "
                                        f"DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg)")
        xtr, ytr, names = data.load_image_folder(root / "train")
        xte, yte, test_names = data.load_image_folder(root / "test")
        if test_names != names:
            raise ValueError(f"class folders differ between {root / 'train'} and {root / 'test'}")
    else:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(DATASETS)}")
    if cfg.subset:
        if cfg.subset > len(xtr):
            raise ValueError(f"--subset {cfg.subset} is larger than the {len(xtr)} training images")
        if cfg.subset < len(xtr):
            xtr, ytr = data.balanced_subset(xtr, ytr, n_total=cfg.subset, seed=cfg.seed)
    if cfg.test_subset:
        xte, yte = stratified_sample(xte, yte, cfg.test_subset)
    return (xtr, ytr), (xte, yte), names


def train_batches(cfg: TrainConfig, x, y):
    """The augmented, shuffled batches of METHOD.md §5 (batch 125; a last partial batch is
    dropped so every BN batch has the same size)."""
    from .data import Batches

    augment = dict(flip=cfg.flip, crop_pad=cfg.crop_pad, cutout=cfg.cutout)
    return Batches(x, y, batch_size=cfg.batch_size, shuffle=True, drop_last=len(x) >= cfg.batch_size,
                   augment=augment if any(augment.values()) else False, seed=cfg.seed)


# --------------------------------------------------------------------------------- steps


def train_step(model, optimizer, x, y, lr, after_backward=None, after_step=None):
    """One SGD step on a batch: forward, mean cross-entropy, backward, update.

    after_backward(model, logits, loss), if given, runs between backward and the update (probes
    read gradients there); after_step(model) runs after the update (update sizes, sign flips).
    Returns (loss, number correct).
    """
    optimizer.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    if after_backward is not None:
        after_backward(model, logits, loss)
    optimizer.step(lr)
    if after_step is not None:
        after_step(model)
    correct = int((logits.data.argmax(axis=1) == y).sum())
    return float(loss.data), correct


def evaluate(model, x, y, batch_size=500):
    """(mean loss, accuracy) of `model` on images x (uint8 or float NHWC) and labels y, in eval
    mode, single centre view (no augmentation). The model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    dtype = model.parameters()[0].dtype
    try:
        with no_grad():
            for i in range(0, len(x), batch_size):
                xb, yb = np.asarray(x[i:i + batch_size], dtype=dtype), np.asarray(y[i:i + batch_size])
                logits = model(xb)
                total_loss += float(F.cross_entropy(logits, yb).data) * len(yb)
                correct += int((logits.data.argmax(axis=1) == yb).sum())
    finally:
        model.train(was_training)
    n = max(len(x), 1)
    return total_loss / n, correct / n


def batch_norms(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


def recalibrate_bn(model, batches):
    """Post-training BN statistics (METHOD.md §3): weights frozen, every BN layer's inference
    mean and variance become the average of its per-batch means and biased variances over
    `batches` (an iterable of (x, y) or of x). Moving averages are left as they are. Returns the
    number of batches; 0 (and nothing changes) if the model has no BN layer."""
    bns = batch_norms(model)
    if not bns:
        return 0
    was_training = model.training
    model.train()
    for bn in bns:
        bn.start_recalibration()
    count = 0
    try:
        with no_grad():
            for batch in batches:
                model(batch[0] if isinstance(batch, tuple) else batch)
                count += 1
    except BaseException:
        for bn in bns:
            bn._calib = None
        raise
    finally:
        model.train(was_training)
    for bn in bns:
        bn.finish_recalibration()
    return count


def set_bn_stats(model, which: str):
    """Which BN statistics eval mode uses: 'recalibrated', 'moving' or 'auto'."""
    for bn in batch_norms(model):
        bn.inference_stats = which


# --------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, model, optimizer, meta: dict):
    """model, optimizer and meta (JSON) in one .npz, written atomically (tmp + os.replace)."""
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def read_checkpoint(path):
    """(model state, optimizer state, meta) from a checkpoint file or a run folder."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path) as f:
            meta = json.loads(str(f["meta"]))
            model_state = {k[6:]: f[k] for k in f.files if k.startswith("model/")}
            optim_state = {k[6:]: f[k] for k in f.files if k.startswith("optim/")}
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path} is not a tinybin checkpoint ({e})") from None
    return model_state, optim_state, meta


def load_checkpoint(path):
    """(model in eval mode, meta) from a checkpoint written by `train`."""
    model_state, _, meta = read_checkpoint(path)
    model = wrn(**meta["arch"])
    model.load_state_dict(model_state)
    set_bn_stats(model, meta.get("bn_stats", "auto"))
    return model.eval(), meta


# --------------------------------------------------------------------------------- logging


class Progress:
    """A live one-line bar on a terminal (step, loss, acc, images/s, ETA); silent otherwise."""

    def __init__(self, total_steps, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.live = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = total_steps
        self.last = 0.0

    def update(self, step, epoch, loss, acc, images_per_s, eta_s, force=False):
        now = time.perf_counter()
        if not self.live or (now - self.last < 0.2 and not force):
            return
        self.last = now
        self.stream.write(f"\r  epoch {epoch + 1} step {step + 1}/{self.total}  loss {loss:.4f}  acc {100 * acc:5.1f}%  "
                          f"{images_per_s:6.0f} img/s  ETA {_hms(eta_s)}  \033[K")
        self.stream.flush()

    def clear(self):
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _hms(seconds):
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _append_jsonl(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_jsonl(path, keep):
    """Keep only the records for which keep(record) is true (used on resume)."""
    if not path.exists():
        return
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in records if keep(r)))


def plot_curves(out_dir):
    """curves.png from steps.jsonl and metrics.jsonl: training loss per step (log scale when it
    spans decades) and train/test accuracy per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    read = lambda name: [json.loads(l) for l in (out_dir / name).read_text().splitlines() if l.strip()] \
        if (out_dir / name).exists() else []
    steps, epochs = read("steps.jsonl"), [r for r in read("metrics.jsonl") if r.get("kind") == "epoch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    if steps:
        s = np.array([r["step"] for r in steps])
        loss = np.array([r["loss"] for r in steps], dtype=float)
        ax1.plot(s, loss, lw=0.6, alpha=0.5, label="batch")
        if len(loss) >= 20:
            k = max(len(loss) // 50, 5)
            ax1.plot(s[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), lw=1.5, label=f"mean of {k}")
        finite = loss[np.isfinite(loss)]
        if finite.size and finite.max() > 20 * max(finite.min(), 1e-12):
            ax1.set_yscale("log")  # a divergence spans decades
    if epochs:
        steps_at = [r["step"] for r in epochs]
        ax1.plot(steps_at, [r["test_loss"] for r in epochs], "o-", ms=3, label="test")
        e = [r["epoch"] for r in epochs]
        ax2.plot(e, [100 * r["train_acc"] for r in epochs], "o-", ms=3, label="train (augmented)")
        ax2.plot(e, [100 * r["test_acc"] for r in epochs], "o-", ms=3, label="test")
    ax1.set(xlabel="step", ylabel="cross-entropy", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy %", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.suptitle(out_dir.name, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "curves.png", dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------- the loop


class DivergenceDetector:
    """Non-finite, exploded (loss > factor·max(first loss, ln C)) or dead (over `window` steps the
    loss is constant to 1e-4 relative and accuracy is at most 1.5× chance)."""

    def __init__(self, num_classes, factor=100.0, window=50, first_loss=None):
        self.chance = 1.0 / num_classes
        self.floor = math.log(num_classes)
        self.factor, self.first_loss = factor, first_loss
        self.recent = deque(maxlen=window)

    def check(self, loss, acc):
        """None if healthy, else the reason."""
        if not math.isfinite(loss):
            return "non-finite"
        if self.first_loss is None:
            self.first_loss = loss
        if loss > self.factor * max(self.first_loss, self.floor):
            return "exploded"
        self.recent.append((loss, acc))
        if len(self.recent) == self.recent.maxlen:
            losses = np.array([r[0] for r in self.recent])
            accs = np.array([r[1] for r in self.recent])
            if np.ptp(losses) <= 1e-4 * abs(losses.mean()) and accs.mean() <= 1.5 * self.chance:
                return "dead: constant loss at chance accuracy"
        return None


def train(cfg: TrainConfig, data=None, resume=False, log=print, after_backward=None, after_step=None):
    """Run (or resume) training as configured; returns a dict of final results.

    data: optional ((x_train, y_train), (x_test, y_test)) already in memory (lessons, tests);
      otherwise `load_data(cfg)`.
    resume: continue from cfg.out/checkpoint.npz; the checkpoint's own config is used (so the
      schedule and data order match), only `stop_after`, `on_diverge` and `out` come from cfg.
    after_backward, after_step: passed to every `train_step` (probes).
    Raises Diverged (after writing its metrics) unless cfg.on_diverge == "continue".
    """
    out = cfg.run_dir()
    cfg = dataclasses.replace(cfg, out=str(out))
    ckpt_path = out / "checkpoint.npz"
    saved = None
    if resume:
        model_state, optim_state, meta = read_checkpoint(ckpt_path)
        keep = {k: getattr(cfg, k) for k in ("stop_after", "on_diverge", "out")}
        cfg = dataclasses.replace(TrainConfig(**meta["config"]), **keep)
        saved = (model_state, optim_state, meta)
    if cfg.variant not in VARIANTS:
        raise ValueError(f"unknown variant {cfg.variant!r}; valid: {', '.join(VARIANTS)}")
    if cfg.bn_stats not in ("recalibrated", "moving"):
        raise ValueError(f"bn_stats must be 'recalibrated' or 'moving', got {cfg.bn_stats!r}")
    if cfg.on_diverge not in ("stop", "continue"):
        raise ValueError(f"on_diverge must be 'stop' or 'continue', got {cfg.on_diverge!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError("epochs and batch size must be positive")

    if data is None:
        (xtr, ytr), (xte, yte), _ = load_data(cfg)
    else:
        (xtr, ytr), (xte, yte) = data
    if saved is not None:
        num_classes = saved[2]["num_classes"]
    else:
        num_classes = {"cifar10": 10, "cifar10-subset": 10, "cifar100": 100}.get(cfg.dataset, int(max(ytr.max(), yte.max())) + 1)
    if VARIANTS[cfg.variant][1] == "scale" and cfg.temperature is None:
        cfg = dataclasses.replace(cfg, temperature=default_temperature(cfg.bits, num_classes))
        log(f"note: variant {cfg.variant} uses the authors' temperature T={cfg.temperature:g} "
            f"({cfg.bits}-bit, {num_classes} classes); set it with --temperature")

    model = wrn(num_classes=num_classes, rng=np.random.default_rng(cfg.seed), **cfg.arch())
    optimizer = SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    loader = train_batches(cfg, xtr, ytr)
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * cfg.epochs
    schedule = Schedule(cfg.schedule, total_steps, steps_per_epoch, cfg.lr, cfg.lr_min)
    eval_x, eval_y = stratified_sample(xte, yte, cfg.epoch_eval_size)  # all of them if None

    out.mkdir(parents=True, exist_ok=True)
    metrics_path, steps_path = out / "metrics.jsonl", out / "steps.jsonl"
    start_epoch, first_loss, history = 0, None, {}
    if saved is not None:
        model_state, optim_state, meta = saved
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        start_epoch, first_loss = meta["epoch"], meta.get("first_loss")
        _truncate_jsonl(metrics_path, lambda r: r.get("kind") == "epoch" and r["epoch"] <= start_epoch)
        _truncate_jsonl(steps_path, lambda r: r["step"] < start_epoch * steps_per_epoch)
        log(f"resumed {ckpt_path} at epoch {start_epoch}/{cfg.epochs}")
    else:
        for p in (metrics_path, steps_path):
            p.unlink(missing_ok=True)

    def meta_for(epoch, **extra):
        return dict(config=dataclasses.asdict(cfg), arch=model.config, num_classes=num_classes, epoch=epoch,
                    step=epoch * steps_per_epoch, first_loss=detector.first_loss, **extra)

    detector = DivergenceDetector(num_classes, cfg.explode_factor, cfg.dead_window, first_loss)
    if saved is None:
        save_checkpoint(ckpt_path, model, optimizer, meta_for(0))
        log(f"{_describe(model, cfg, len(xtr), len(xte), steps_per_epoch)}")

    progress = Progress(total_steps)
    run_start, images_done, diverged = time.perf_counter(), 0, None
    end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start_epoch + cfg.stop_after)
    model.train()
    try:
        for epoch in range(start_epoch, end_epoch):
            epoch_start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
            step_records = []
            for b, (xb, yb) in enumerate(loader.epoch(epoch)):
                step = epoch * steps_per_epoch + b
                lr = schedule(step)
                loss, ok = train_step(model, optimizer, xb, yb, lr, after_backward, after_step)
                loss_sum, correct, seen = loss_sum + loss * len(yb), correct + ok, seen + len(yb)
                images_done += len(yb)
                step_records.append(dict(step=step, epoch=epoch, lr=lr, loss=loss, acc=ok / len(yb)))
                reason = detector.check(loss, ok / len(yb))
                if reason is not None and diverged is None:
                    diverged = Diverged(step, loss, reason, out)
                    if cfg.on_diverge == "stop":
                        raise diverged
                    _append_jsonl(metrics_path, dict(kind="diverged", step=step, loss=loss, reason=reason))
                    log(f"warning: {diverged}; continuing as asked")
                rate = images_done / (time.perf_counter() - run_start)
                eta = (total_steps - step - 1) * cfg.batch_size / max(rate, 1e-9)
                progress.update(step, epoch, loss, ok / len(yb), rate, eta)
            train_time = time.perf_counter() - epoch_start
            test_loss, test_acc = evaluate(model, eval_x, eval_y)
            progress.clear()
            record = dict(kind="epoch", epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch, lr=lr,
                          train_loss=loss_sum / seen, train_acc=correct / seen, test_loss=test_loss,
                          test_acc=test_acc, test_images=len(eval_x), bn_stats="moving",
                          seconds=time.perf_counter() - epoch_start, images_per_s=seen / train_time)
            with open(steps_path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in step_records)
            _append_jsonl(metrics_path, record)
            save_checkpoint(ckpt_path, model, optimizer, meta_for(epoch + 1))
            log(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {record['train_loss']:.4f}  train {100 * record['train_acc']:5.1f}%"
                f"  test {100 * test_acc:5.1f}% ({len(eval_x)})  lr {lr:.2e}  {record['images_per_s']:.0f} img/s"
                f"  {record['seconds']:.0f}s")
            history = record
    except Diverged as d:
        progress.clear()
        if step_records:
            with open(steps_path, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in step_records)
        _append_jsonl(metrics_path, dict(kind="diverged", step=d.step, loss=d.loss, reason=d.reason))
        plot_curves(out)
        raise
    except KeyboardInterrupt:
        progress.clear()
        log(f"interrupted; the last checkpoint is {ckpt_path} (continue with --resume)")
        raise
    plot_curves(out)

    result = dict(out=str(out), epochs_done=end_epoch, last_epoch=history,
                  diverged=None if diverged is None else str(diverged))
    if end_epoch < cfg.epochs:
        log(f"stopped after epoch {end_epoch}/{cfg.epochs}; continue with --resume")
        return result

    result.update(final_test(model, loader.epoch(cfg.epochs), xte, yte, cfg.bn_stats, log))
    result["minutes"] = (time.perf_counter() - run_start) / 60
    _append_jsonl(metrics_path, dict(kind="final", **{k: v for k, v in result.items() if k != "last_epoch"}))
    save_checkpoint(ckpt_path, model, optimizer, meta_for(cfg.epochs, bn_stats=cfg.bn_stats,
                                                          test_acc=result["test_acc"]))
    return result


def final_test(model, recalibration_batches, x, y, bn_stats="recalibrated", log=print) -> dict:
    """After training: choose the BN inference statistics (METHOD.md §3), then test on (x, y).

    With BN layers, the moving averages are tested too; "recalibrated" then recomputes the
    statistics over `recalibration_batches` (one epoch of augmented training batches).
    """
    result = {"bn_stats": bn_stats if batch_norms(model) else None}
    note, tested = "", None                  # tested: (loss, accuracy) with the statistics in use
    if batch_norms(model):
        set_bn_stats(model, "moving")
        tested = evaluate(model, x, y)
        result["test_acc_moving"] = tested[1]
        if bn_stats == "recalibrated":
            t = time.perf_counter()
            n = recalibrate_bn(model, recalibration_batches)
            set_bn_stats(model, "recalibrated")
            log(f"BN statistics recalibrated over {n} augmented batches ({time.perf_counter() - t:.0f}s)")
            note = f" (BN statistics recalibrated; with moving averages {100 * result['test_acc_moving']:.2f} %)"
            tested = None                    # the statistics changed: test again
        else:
            note = " (BN statistics: moving averages)"
    result["test_loss"], result["test_acc"] = tested or evaluate(model, x, y)
    result["test_images"] = len(x)
    log(f"test accuracy: {100 * result['test_acc']:.2f} % on {len(x)} images{note}")
    return result


def _describe(model, cfg, n_train, n_test, steps_per_epoch):
    c = model.config
    t = f", T={c['temperature']:g}" if c["temperature"] else ""
    return (f"WRN-{c['depth']}-{c['width']} {c['variant']}{t}, {c['bits']}-bit, {model.num_parameters():,} parameters; "
            f"{n_train} training / {n_test} test images; {cfg.epochs} epochs × {steps_per_epoch} steps of "
            f"{cfg.batch_size}; lr {cfg.lr} {cfg.schedule}; seed {cfg.seed}; out {cfg.out}")
