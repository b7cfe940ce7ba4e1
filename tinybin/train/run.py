"""A training run: the recipe of P2 §IV around `fit`, with a run folder that survives crashes.

    from tinybin.train import TrainConfig, train
    result = train(TrainConfig(width=1, variant="srelu", epochs=10, dataset="cifar10-subset"))

One run writes into `out/`:
    checkpoint.npz   model + optimizer + epoch/step/config, rewritten atomically after each epoch
                     (and once before the first, so a run that diverges at once still has one)
    metrics.jsonl    one JSON record per epoch (+ "final" and "diverged" records)
    steps.jsonl      one record per training step: step, epoch, lr, loss, acc
    curves.png       loss and accuracy curves
    run.json         the run's config and architecture, so --resume refuses a checkpoint from another run

Reproducibility: the initial weights come from `seed`, and everything random in epoch e (order,
augmentation) from (seed, e) alone (tinybin.data.Batches). A resumed run therefore sees the same
batches, learning rates and momentum as an uninterrupted one and ends with identical weights.

Divergence (tinybin.train.divergence): when the loss explodes or the net dies the run stops
with "diverged at step N (loss=...)", keeping its metrics and its last good checkpoint
(`on_diverge="continue"` watches it run on instead).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from ..data.subset import stratified_sample
from ..io import check_writable_folder
from ..models import wrn
from ..models.wrn import temperature_for, uses_temperature
from ..optim import SGD, Schedule
from .bn_stats import final_test
from .checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig, load_data, resume_config, train_batches
from .divergence import Diverged, DivergenceDetector
from .logs import Progress, append_jsonl, plot_curves, truncate_jsonl
from .loop import evaluate, fit
from .run_record import check_resume, write_run_record


class _Callbacks:
    """The user's after_backward(model, logits, loss) / after_step(model) as a `fit` hook."""

    def __init__(self, after_backward, after_step):
        self.backward, self.step = after_backward, after_step

    def after_backward(self, model, logits, loss, y):
        if self.backward is not None:
            self.backward(model, logits, loss)

    def after_step(self, model):
        if self.step is not None:
            self.step(model)


class _Meter:
    """Per-epoch sums, the step records for steps.jsonl, and the live progress bar."""

    def __init__(self, epoch, total_steps, batch_size, progress):
        self.epoch, self.total, self.batch_size, self.progress = epoch, total_steps, batch_size, progress
        self.records, self.began = [], time.perf_counter()
        self.loss_sum = self.correct = self.seen = 0

    def end_step(self, record):
        self.records.append(dict(step=record["step"], epoch=self.epoch, lr=record["lr"], loss=record["loss"],
                                 acc=record["acc"]))
        n = record["images"]
        self.loss_sum += record["loss"] * n
        self.correct += round(record["acc"] * n)
        self.seen += n
        rate = self.seen / (time.perf_counter() - self.began)
        eta = (self.total - record["step"] - 1) * self.batch_size / max(rate, 1e-9)
        self.progress.update(record["step"], self.epoch, record["loss"], record["acc"], rate, eta)


RUN_FILES = ("checkpoint.npz", "metrics.jsonl", "steps.jsonl")


def existing_run(out) -> list:
    """The files of a run that `out` already holds (none: the folder is free for a new run)."""
    return [name for name in RUN_FILES if (Path(out) / name).exists()]


def _resolve(cfg: TrainConfig, resume: bool, overwrite: bool):
    """(config, saved checkpoint or None). On resume the checkpoint's own config is used, with
    the settings of cfg that differ from TrainConfig's defaults and may change (resume_config);
    a conflicting one is a ValueError."""
    out = cfg.run_dir()
    cfg = dataclasses.replace(cfg, out=str(out))
    if not resume:
        found = existing_run(out)
        if found and not overwrite:
            raise FileExistsError(f"{out} already holds a run ({', '.join(found)}): resume=True continues it, "
                                  f"overwrite=True replaces it")
        check_writable_folder(out)
        return cfg.validate(), None
    saved = read_checkpoint(out / "checkpoint.npz")
    check_resume(out, saved[2])
    defaults = TrainConfig()
    requested = {k: v for k, v in dataclasses.asdict(cfg).items() if v != getattr(defaults, k)}
    return resume_config(saved[2], requested), saved


def train(cfg: TrainConfig, data=None, resume=False, log=print, after_backward=None, after_step=None,
          overwrite=False):
    """Run (or resume) training as configured; returns a dict of final results.

    data: optional ((x_train, y_train), (x_test, y_test)) already in memory (lessons, tests);
      otherwise `load_data(cfg)`.
    resume: continue from cfg.out/checkpoint.npz (see `_resolve`).
    overwrite: start afresh in a folder that holds a run (without it: FileExistsError).
    after_backward, after_step: called every step as in `train_step` (probes).
    Raises Diverged (after writing its metrics) unless cfg.on_diverge == "continue".
    """
    cfg, saved = _resolve(cfg, resume, overwrite)
    out = cfg.run_dir()
    (xtr, ytr), (xte, yte) = load_data(cfg)[:2] if data is None else data
    if saved is not None:
        num_classes = saved[2]["num_classes"]
    else:
        num_classes = {"cifar10": 10, "cifar10-subset": 10, "cifar100": 100}.get(cfg.dataset, int(max(ytr.max(), yte.max())) + 1)
    if uses_temperature(cfg.variant) and cfg.temperature is None:
        cfg = dataclasses.replace(cfg, temperature=temperature_for(cfg.variant, cfg.bits, num_classes))
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
    ckpt_path, metrics_path, steps_path = out / "checkpoint.npz", out / "metrics.jsonl", out / "steps.jsonl"
    start_epoch, first_loss = 0, None
    if saved is not None:
        model_state, optim_state, meta = saved
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        start_epoch, first_loss = meta["epoch"], meta.get("first_loss")
        truncate_jsonl(metrics_path, lambda r: r.get("kind") == "epoch" and r["epoch"] <= start_epoch)
        truncate_jsonl(steps_path, lambda r: r["step"] < start_epoch * steps_per_epoch)
        log(f"resumed {ckpt_path} at epoch {start_epoch}/{cfg.epochs}")
    else:
        for p in (metrics_path, steps_path, out / "curves.png"):  # asked to overwrite: no stale leftovers
            p.unlink(missing_ok=True)
        if cfg.input_norm == "fixed":  # P2 Fig. 4 (iii): fixed statistics of the raw, unaugmented training images
            mean, var = model.input_bn.fit_statistics(xtr)  # (a resumed run has them in its checkpoint)
            log(f"input normalisation: fixed, per-channel mean ({', '.join(f'{v:.2f}' for v in mean)}) and std "
                f"({', '.join(f'{v:.2f}' for v in np.sqrt(var))}) of the {len(xtr)} training images")

    watch = DivergenceDetector(num_classes, cfg.explode_factor, cfg.dead_window, first_loss,
                               stop=cfg.on_diverge == "stop", out=out)

    def meta_for(epoch, **extra):
        return dict(config=dataclasses.asdict(cfg), arch=model.config, num_classes=num_classes, epoch=epoch,
                    step=epoch * steps_per_epoch, first_loss=watch.first_loss, **extra)

    if saved is None:
        save_checkpoint(ckpt_path, model, optimizer, meta_for(0))
        write_run_record(out, meta_for(0))
        log(describe(model, cfg, len(xtr), len(xte), steps_per_epoch))

    progress, run_start = Progress(total_steps), time.perf_counter()
    end_epoch = cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start_epoch + cfg.stop_after)
    history, meter = {}, None
    try:
        for epoch in range(start_epoch, end_epoch):
            meter = _Meter(epoch, total_steps, cfg.batch_size, progress)
            warned = watch.failure
            steps = fit(model, optimizer, loader.epoch(epoch), schedule, steps_per_epoch,
                        hooks=[_Callbacks(after_backward, after_step), meter, watch], start=epoch * steps_per_epoch)
            if watch.failure is not None and warned is None:
                append_jsonl(metrics_path, dict(kind="diverged", step=watch.failure.step, loss=watch.failure.loss,
                                                reason=watch.failure.reason))
                log(f"warning: {watch.failure}; continuing as asked")
            train_time = time.perf_counter() - meter.began
            test_loss, test_acc = evaluate(model, eval_x, eval_y)
            progress.clear()
            history = dict(kind="epoch", epoch=epoch + 1, step=(epoch + 1) * steps_per_epoch, lr=steps[-1]["lr"],
                           train_loss=meter.loss_sum / meter.seen, train_acc=meter.correct / meter.seen,
                           test_loss=test_loss, test_acc=test_acc, test_images=len(eval_x), bn_stats="moving",
                           seconds=time.perf_counter() - meter.began, images_per_s=meter.seen / train_time)
            append_jsonl(steps_path, *meter.records)
            append_jsonl(metrics_path, history)
            save_checkpoint(ckpt_path, model, optimizer, meta_for(epoch + 1))
            log(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {history['train_loss']:.4f}  train "
                f"{100 * history['train_acc']:5.1f}%  test {100 * test_acc:5.1f}% ({len(eval_x)})  lr {history['lr']:.2e}"
                f"  {history['images_per_s']:.0f} img/s  {history['seconds']:.0f}s")
    except Diverged as d:
        progress.clear()
        append_jsonl(steps_path, *meter.records)
        append_jsonl(metrics_path, dict(kind="diverged", step=d.step, loss=d.loss, reason=d.reason))
        plot_curves(out, title(model))
        raise
    except KeyboardInterrupt:
        progress.clear()
        log(f"interrupted; the last checkpoint is {ckpt_path} (continue with --resume)")
        raise

    result = dict(out=str(out), epochs_done=end_epoch, last_epoch=history,
                  diverged=None if watch.failure is None else str(watch.failure))
    if end_epoch < cfg.epochs:
        plot_curves(out, title(model))
        log(f"stopped after epoch {end_epoch}/{cfg.epochs}; continue with --resume")
        return result
    result.update(final_test(model, loader.epoch(cfg.epochs), xte, yte, cfg.bn_stats, log))
    result["minutes"] = (time.perf_counter() - run_start) / 60
    append_jsonl(metrics_path, dict(kind="final", **{k: v for k, v in result.items() if k != "last_epoch"}))
    save_checkpoint(ckpt_path, model, optimizer, meta_for(cfg.epochs, bn_stats=cfg.bn_stats,
                                                          test_acc=result["test_acc"]))
    plot_curves(out, title(model))
    return result


def title(model):
    """"WRN-20-4 srelu, T=40, 1-bit" (+ ", fixed input norm"): the model a run trains."""
    c = model.config
    t = f", T={c['temperature']:g}" if c["temperature"] else ""
    fixed = ", fixed input norm" if c.get("input_norm") == "fixed" else ""
    return f"WRN-{c['depth']}-{c['width']} {c['variant']}{t}, {c['bits']}-bit{fixed}"


def describe(model, cfg, n_train, n_test, steps_per_epoch):
    """The run's first line: network, data, schedule, seed and folder."""
    return (f"{title(model)}, {model.num_parameters():,} parameters; "
            f"{n_train} training / {n_test} test images; {_plural(cfg.epochs, 'epoch')} × {_plural(steps_per_epoch, 'step')} of "
            f"{cfg.batch_size}; lr {cfg.lr} {cfg.schedule}; seed {cfg.seed}; out {cfg.out}")


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
