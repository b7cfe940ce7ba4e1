"""A run folder: which run it holds (new, or resumed from its checkpoint), and its files,
written by one process only (rank 0 of a data-parallel run; the others skip every write)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..io import check_writable_folder
from .checkpoint import read_checkpoint, save_checkpoint
from .config import TrainConfig, resume_config
from .curves import plot_curves
from .logs import append_jsonl, truncate_jsonl
from .run_record import check_resume, write_run_record

RUN_FILES = ("checkpoint.npz", "metrics.jsonl", "steps.jsonl")  # run.json (run_record) names the run they hold


def existing_run(out) -> list:
    """The files of a run that `out` already holds (none: the folder is free for a new run)."""
    return [name for name in RUN_FILES if (Path(out) / name).exists()]


def resolve(cfg: TrainConfig, resume: bool, overwrite: bool):
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
        check_writable_folder(out)  # before the data and the training, not when the first save fails
        return cfg.validate(), None
    saved = read_checkpoint(out / "checkpoint.npz")
    check_resume(out, saved[2])  # the folder's own run, its logs readable; nothing changed if not
    defaults = TrainConfig()
    requested = {k: v for k, v in dataclasses.asdict(cfg).items() if v != getattr(defaults, k)}
    return resume_config(saved[2], requested), saved


class RunFolder:
    """checkpoint.npz, metrics.jsonl, steps.jsonl and curves.png of one run; writes=False: a
    process that trains with others and leaves the writing to rank 0."""

    def __init__(self, out, writes=True):
        self.out, self.writes = Path(out), writes
        self.checkpoint = self.out / "checkpoint.npz"

    def clear(self):
        """A new run: the folder exists, with no logs or figure left from a run it replaces."""
        if self.writes:
            self.out.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "steps.jsonl", "curves.png"):
                (self.out / name).unlink(missing_ok=True)

    def resumed(self, epoch, steps_per_epoch, trainer):
        """A resumed run: the logs cut back to its checkpoint's epoch, and the resume recorded
        (curves.png marks it)."""
        if self.writes:
            step = epoch * steps_per_epoch
            truncate_jsonl(self.out / "metrics.jsonl",
                           lambda r: (r.get("kind") == "epoch" and r["epoch"] <= epoch)
                           or (r.get("kind") == "resumed" and r["epoch"] < epoch))
            truncate_jsonl(self.out / "steps.jsonl", lambda r: r["step"] < step)
            append_jsonl(self.out / "metrics.jsonl", dict(kind="resumed", epoch=epoch, step=step, trainer=trainer))

    def append(self, name, *records):
        if self.writes:
            append_jsonl(self.out / name, *records)

    def save(self, model, optimizer, meta):
        """The checkpoint; at a run's start (epoch 0) also run.json, which names the run."""
        if self.writes:
            save_checkpoint(self.checkpoint, model, optimizer, meta)
            if meta["epoch"] == 0:
                write_run_record(self.out, meta)

    def plot(self, title):
        if self.writes:
            plot_curves(self.out, title)
