"""A training run: the recipe of P2 §III.A around `fit`, with a run folder that survives crashes.

    from tinybin.train import TrainConfig, train
    result = train(TrainConfig(width=1, variant="srelu", epochs=10, dataset="cifar10-subset"))

A run is prepare → epochs → finish, the same for every engine (tinybin.train.engine: tinybin's
own, or PyTorch's through tinybin.torch.train). One run writes into `out/`:
    checkpoint.npz   model + optimizer + epoch/step/config, rewritten atomically after each epoch
                     (and once before the first, so a run that diverges at once still has one)
    metrics.jsonl    one JSON record per epoch (+ "resumed", "diverged" and "final" records)
    steps.jsonl      one record per training step: step, epoch, lr, loss, acc
    curves.png       loss and accuracy curves

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

import numpy as np

from ..data.subset import stratified_sample
from ..models import wrn
from ..models.wrn import temperature_for, uses_temperature
from ..optim import SGD, Schedule
from .config import TrainConfig, train_batches
from .divergence import Diverged, DivergenceDetector
from .engine import Engine
from .folder import RunFolder, resolve
from .logs import Progress


class _Meter:
    """Per-epoch sums, the step records for steps.jsonl, and the live progress bar."""

    def __init__(self, epoch, total_steps, batch_size, progress):
        self.epoch, self.total, self.batch_size, self.progress = epoch, total_steps, batch_size, progress
        self.records, self.began = [], time.perf_counter()
        self.loss_sum = self.correct = self.seen = 0
        self.first_step_s = self.after_first = None   # (time, images) at the end of the first step

    def end_step(self, record):
        self.records.append(dict(step=record["step"], epoch=self.epoch, lr=record["lr"], loss=record["loss"],
                                 acc=record["acc"]))
        n = record["images"]
        now = self.last_end = time.perf_counter()
        self.loss_sum += record["loss"] * n
        self.correct += round(record["acc"] * n)
        self.seen += n
        rate = eta = None
        if self.after_first is None:   # the first step of a new process compiles the kernels: time from its end
            self.first_step_s, self.after_first = now - self.began, (now, self.seen)
        elif now > self.after_first[0]:
            rate = (self.seen - self.after_first[1]) / (now - self.after_first[0])
            eta = (self.total - record["step"] - 1) * self.batch_size / max(rate, 1e-9)
        self.progress.update(record["step"], self.epoch, record["loss"], record["acc"], rate, eta)

    def compile_seconds(self):
        """How much longer the first step took than the others (kernel compilation, once per machine),
        or None when it was not markedly slower."""
        rest = len(self.records) - 1
        if self.first_step_s is None or rest < 1:
            return None
        per_step = (self.last_end - self.after_first[0]) / rest
        extra = self.first_step_s - per_step
        return extra if extra > 2 and self.first_step_s > 3 * per_step else None


def train(cfg: TrainConfig, data=None, resume=False, log=print, hooks=(), overwrite=False, engine=None):
    """Run (or resume) training as configured; returns a dict of final results.

    data: optional ((x_train, y_train), (x_test, y_test)) already in memory (lessons, tests);
      otherwise the engine loads them (`load_data(cfg)`).
    resume: continue from cfg.out/checkpoint.npz (tinybin.train.folder.resolve).
    overwrite: start afresh in a folder that holds a run (without it: FileExistsError).
    hooks: `fit` hooks called every step besides the run's own (probes).
    engine: where it trains (default tinybin's own; tinybin.torch.engine.TorchEngine).
    Raises Diverged (after writing its metrics) unless cfg.on_diverge == "continue".
    """
    run = prepare(cfg, data, resume, overwrite, engine or Engine(), log)
    last = epochs(run, hooks)
    return finish(run, last)


@dataclasses.dataclass
class Run:
    """A prepared run: its config, engine, folder, data, batches and schedule."""
    cfg: TrainConfig
    engine: Engine
    folder: RunFolder
    log: object
    num_classes: int
    test: tuple                  # (x, y): the final test
    evaluation: tuple            # (x, y): the test images evaluated after each epoch
    loader: object
    schedule: Schedule
    steps_per_epoch: int
    watch: DivergenceDetector
    start_epoch: int
    end_epoch: int               # of this invocation (stop_after)
    began: float                 # time.perf_counter() when training began

    def save(self, epoch, **extra):
        if not self.folder.writes:
            return
        model, optimizer = self.engine.tinybin_state()
        self.folder.save(model, optimizer, dict(
            config=dataclasses.asdict(self.cfg), arch=model.config, num_classes=self.num_classes, epoch=epoch,
            step=epoch * self.steps_per_epoch, first_loss=self.watch.first_loss, trained_with=self.engine.name,
            **extra))

    def plot(self):
        self.folder.plot(f"{title(self.cfg.arch())}, seed {self.cfg.seed}")


def prepare(cfg, data, resume, overwrite, engine, log) -> Run:
    """The config (a resumed run's own), the data, the model and SGD (the seed's initial weights,
    or the checkpoint's) handed to the engine, the batches, the schedule and the run folder."""
    cfg, saved = resolve(cfg, resume, overwrite)
    engine.compile_ahead()
    folder = RunFolder(cfg.run_dir(), writes=engine.rank == 0)
    (xtr, ytr), (xte, yte) = engine.load_data(cfg) if data is None else data
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
    start_epoch, first_loss = 0, None
    if saved is not None:
        model_state, optim_state, meta = saved
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optim_state)
        start_epoch, first_loss = meta["epoch"], meta.get("first_loss")
        folder.resumed(start_epoch, steps_per_epoch, engine.name)
        log(f"resumed {folder.checkpoint} at epoch {start_epoch}/{cfg.epochs}")
    else:
        folder.clear()  # asked to overwrite: no stale leftovers
        if cfg.input_norm == "fixed":  # P2 Fig. 4 (iii): fixed statistics of the raw, unaugmented training images
            mean, var = model.input_bn.fit_statistics(xtr)  # (a resumed run has them in its checkpoint)
            log(f"input normalisation: fixed, per-channel mean ({', '.join(f'{v:.2f}' for v in mean)}) and std "
                f"({', '.join(f'{v:.2f}' for v in np.sqrt(var))}) of the {len(xtr)} training images")
    first_line = describe(cfg, model, len(xtr), len(xte), steps_per_epoch, engine)
    engine.start(model, optimizer)
    run = Run(cfg=cfg, engine=engine, folder=folder, log=log, num_classes=num_classes,
              test=(xte, yte), evaluation=stratified_sample(xte, yte, cfg.epoch_eval_size),  # all if None
              loader=loader, schedule=Schedule(cfg.schedule, steps_per_epoch * cfg.epochs, steps_per_epoch, cfg.lr,
                                               cfg.lr_min),
              steps_per_epoch=steps_per_epoch,
              watch=DivergenceDetector(num_classes, cfg.explode_factor, cfg.dead_window, first_loss,
                                       stop=cfg.on_diverge == "stop", out=folder.out),
              start_epoch=start_epoch,
              end_epoch=cfg.epochs if cfg.stop_after is None else min(cfg.epochs, start_epoch + cfg.stop_after),
              began=time.perf_counter())
    if saved is None:
        run.save(0)
        log(first_line)
    return run


def epochs(run: Run, hooks=()) -> dict:
    """Train from run.start_epoch to run.end_epoch; after each epoch a test on run.evaluation, a
    metrics record, a log line and a checkpoint. Returns the last epoch's record."""
    cfg, engine, folder, watch = run.cfg, run.engine, run.folder, run.watch
    total_steps = run.steps_per_epoch * cfg.epochs
    progress = Progress(total_steps)
    progress.live = progress.live and engine.rank == 0   # one bar, on the process that logs
    history, meter = {}, None
    progress.note("first step: compiling kernels, once per machine (from the cache later: seconds)…")
    try:
        for epoch in range(run.start_epoch, run.end_epoch):
            meter = _Meter(epoch, total_steps, cfg.batch_size, progress)
            warned = watch.failure
            steps = engine.fit(run.loader.epoch(epoch), run.schedule, run.steps_per_epoch,
                               [*hooks, meter, watch], epoch * run.steps_per_epoch)
            compiled = meter.compile_seconds() if epoch == run.start_epoch else None
            if watch.failure is not None and warned is None:
                folder.append("metrics.jsonl", dict(kind="diverged", step=watch.failure.step,
                                                    loss=watch.failure.loss, reason=watch.failure.reason))
                run.log(f"warning: {watch.failure}; continuing as asked")
            train_time = time.perf_counter() - meter.began
            test_loss, test_acc = engine.evaluate(*run.evaluation)
            progress.clear()
            history = dict(kind="epoch", epoch=epoch + 1, step=(epoch + 1) * run.steps_per_epoch, lr=steps[-1]["lr"],
                           train_loss=meter.loss_sum / meter.seen, train_acc=meter.correct / meter.seen,
                           test_loss=test_loss, test_acc=test_acc, test_images=len(run.evaluation[0]),
                           bn_stats="moving", seconds=time.perf_counter() - meter.began,
                           images_per_s=meter.seen / train_time)
            folder.append("steps.jsonl", *meter.records)
            folder.append("metrics.jsonl", history)
            run.save(epoch + 1)
            run.log(f"epoch {epoch + 1:3d}/{cfg.epochs}  loss {history['train_loss']:.4f}  train "
                    f"{100 * history['train_acc']:5.1f}%  test {100 * test_acc:5.1f}% ({len(run.evaluation[0])})  "
                    f"lr {history['lr']:.2e}  {history['images_per_s']:.0f} img/s  {history['seconds']:.0f}s"
                    + (f"  (the first step took {compiled:.0f}s longer: kernel compilation, once per machine)"
                       if compiled else ""))
    except Diverged as d:
        progress.clear()
        folder.append("steps.jsonl", *meter.records)
        folder.append("metrics.jsonl", dict(kind="diverged", step=d.step, loss=d.loss, reason=d.reason))
        run.plot()
        raise
    except KeyboardInterrupt:
        progress.clear()
        run.log(f"interrupted; the last checkpoint is {folder.checkpoint} (continue with --resume)")
        raise
    return history


def finish(run: Run, last: dict) -> dict:
    """The final test (BN statistics chosen, tinybin.train.engine), its record, the final
    checkpoint and curves.png; or, when this invocation stopped early, only the curves."""
    cfg = run.cfg
    result = dict(out=str(run.folder.out), epochs_done=run.end_epoch, last_epoch=last,
                  diverged=None if run.watch.failure is None else str(run.watch.failure))
    if run.end_epoch < cfg.epochs:
        run.plot()
        run.log(f"stopped after epoch {run.end_epoch}/{cfg.epochs}; continue with --resume")
        return result
    result.update(run.engine.final_test(run.loader.epoch(cfg.epochs), *run.test, cfg.bn_stats, run.log))
    result["minutes"] = (time.perf_counter() - run.began) / 60
    run.folder.append("metrics.jsonl", dict(kind="final", **{k: v for k, v in result.items() if k != "last_epoch"}))
    run.save(cfg.epochs, bn_stats=cfg.bn_stats, test_acc=result["test_acc"])
    run.plot()
    return result


def title(arch: dict):
    """"WRN-20-4 srelu, T=40, 1-bit" (+ ", fixed input norm"): the model a run trains (arch: a
    model's config, or TrainConfig.arch())."""
    c = arch
    t = f", T={c['temperature']:g}" if c["temperature"] else ""
    fixed = ", fixed input norm" if c.get("input_norm") == "fixed" else ""
    return f"WRN-{c['depth']}-{c['width']} {c['variant']}{t}, {c['bits']}-bit{fixed}"


def describe(cfg, model, n_train, n_test, steps_per_epoch, engine):
    """The run's first line: network, data, schedule, seed, where it trains, and folder."""
    return (f"{title(model.config)}, {model.num_parameters():,} parameters; "
            f"{n_train} training / {n_test} test images; {_plural(cfg.epochs, 'epoch')} × "
            f"{_plural(steps_per_epoch, 'step')} of {cfg.batch_size}; lr {cfg.lr} {cfg.schedule}; seed {cfg.seed}"
            f"{engine.describe()}; out {cfg.out}")


def _plural(n, word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
