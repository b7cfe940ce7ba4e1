"""What defines a run: TrainConfig, its validation, and the data and batches it names."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from ..data.subset import stratified_sample
from ..models.wrn import check_arguments

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
    input_norm: str = "bn"            # bn: learned input BN (authors' code) | fixed: training-image statistics (P2's text)
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
                    temperature=self.temperature, padding=self.padding, input_norm=self.input_norm)

    def validate(self):
        """ValueError naming the first setting that cannot work (before any data is read)."""
        if self.temperature is not None and not (math.isfinite(self.temperature) and self.temperature > 0):
            # T = inf zeroes every logit: the loss stays at ln(classes) and nothing is learned
            raise ValueError(f"--temperature {self.temperature:g} cannot work: it must be a finite number above 0")
        check_arguments(self.depth, self.width, 10, self.variant, self.bits, self.temperature, self.padding,
                        self.input_norm)
        if self.bn_stats not in ("recalibrated", "moving"):
            raise ValueError(f"bn_stats must be 'recalibrated' or 'moving', got {self.bn_stats!r}")
        if self.on_diverge not in ("stop", "continue"):
            raise ValueError(f"on_diverge must be 'stop' or 'continue', got {self.on_diverge!r}")
        for flag, value, ok, want in (
                ("--epochs", self.epochs, self.epochs >= 1, "at least 1"),
                ("--batch-size", self.batch_size, self.batch_size >= 1, "at least 1"),
                ("--lr", self.lr, self.lr > 0, "positive"),
                ("--lr-min", self.lr_min, self.lr_min >= 0, "0 or more"),
                ("--momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)"),
                ("--weight-decay", self.weight_decay, self.weight_decay >= 0, "0 or more"),
                ("--cutout", self.cutout, self.cutout >= 0, "0 (off) or more"),
                ("--crop-pad", self.crop_pad, self.crop_pad >= 0, "0 (off) or more"),
                ("--stop-after", self.stop_after, self.stop_after is None or self.stop_after >= 1, "at least 1"),
                ("--subset", self.subset, not self.subset or self.subset > 0, "0 (all) or more"),
                ("--test-subset", self.test_subset, not self.test_subset or self.test_subset > 0, "0 (all) or more"),
                ("--epoch-eval-size", self.epoch_eval_size, not self.epoch_eval_size or self.epoch_eval_size > 0,
                 "0 (all) or more")):
            if not ok:
                raise ValueError(f"{flag} {value:g} cannot work: it must be {want}")
        return self


# What may differ on resume: how long to go on, what to do on divergence, which BN statistics
# to test with at the end, and where the same data and run are found. Everything else defines
# the run (its weights, batches, schedule shape) and must match the checkpoint.
CHANGEABLE_ON_RESUME = ("epochs", "stop_after", "on_diverge", "bn_stats", "data_dir", "archive", "out",
                        "explode_factor", "dead_window")


def resume_config(meta: dict, requested: dict) -> TrainConfig:
    """The config of a resumed run: the checkpoint's (meta["config"]), with the `requested`
    settings that may change on resume (CHANGEABLE_ON_RESUME).

    requested: the settings asked for ({field: value}; the command line passes only the flags typed).
    Raises ValueError naming every requested setting that conflicts with the saved run, and when
    there is nothing left to train.
    """
    # a setting the saved run predates (e.g. input_norm) had its default: TrainConfig(**saved) gives it that
    saved, done = {**dataclasses.asdict(TrainConfig()), **meta["config"]}, meta["epoch"]
    conflicts = [f"--{k.replace('_', '-')} {_show(v)} (the run has {_show(saved.get(k))})"
                 for k, v in requested.items()
                 if k not in CHANGEABLE_ON_RESUME and k in saved and v is not None and v != saved[k]]
    if conflicts:
        raise ValueError(f"--resume continues the saved run, which differs: {'; '.join(conflicts)}; "
                         f"--overwrite starts a new run instead")
    # stop_after and on_diverge belong to one invocation: not inherited from the saved run
    cfg = TrainConfig(**{**saved, "stop_after": None, "on_diverge": "stop",
                         **{k: v for k, v in requested.items() if k in CHANGEABLE_ON_RESUME}})
    if cfg.epochs < done or (cfg.epochs == done and "test_acc" in meta):
        state = f"{done} epoch{'s' if done != 1 else ''}" + (" and is finished" if "test_acc" in meta else "")
        raise ValueError(f"the run in {cfg.run_dir()} has done {state}: --epochs N with N > {done} trains on, "
                         f"--overwrite starts again")
    return cfg.validate()


def _show(value):
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def load_data(cfg: TrainConfig):
    """((x_train, y_train), (x_test, y_test), class_names) for cfg.dataset, subset applied.

    Raises FileNotFoundError / ValueError / tinybin.data errors with a one-line message.
    """
    from .. import data

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
            raise ValueError(_class_difference(root, names, test_names))
    else:
        raise ValueError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(DATASETS)}")
    if cfg.subset:
        xtr, ytr = _subset(cfg, xtr, ytr)
    if cfg.test_subset:
        xte, yte = stratified_sample(xte, yte, cfg.test_subset)
    if cfg.batch_size > len(xtr):
        # a step would use every image, and the header's "steps of B" would not be what runs
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the {len(xtr)} training images: give "
                         f"--batch-size {len(xtr)} or less (or more images with --subset)")
    return (xtr, ytr), (xte, yte), names


def _subset(cfg, x, y):
    """The class-balanced --subset of (x, y): at least one image of every class, at most all of them."""
    from ..data import balanced_subset

    classes = len(set(y.tolist()))
    if cfg.subset > len(x):
        raise ValueError(f"--subset {cfg.subset} is larger than the {len(x)} training images (--subset 0 uses all of them)")
    if cfg.subset < classes:
        raise ValueError(f"--subset {cfg.subset} is fewer images than the {classes} classes: give at least "
                         f"{classes}, one image per class")
    if cfg.subset == len(x):
        return x, y
    try:
        return balanced_subset(x, y, n_total=cfg.subset, seed=cfg.seed)
    except ValueError as e:  # a class too small for an equal share
        raise ValueError(f"--subset {cfg.subset} cannot be class-balanced: {e}") from None


def _class_difference(root, train, test):
    """Which class names only one of train/ and test/ has (labels come from the sorted names)."""
    parts = [f"only in {root / part}: {', '.join(sorted(set(a) - set(b)))}"
             for part, a, b in (("train", train, test), ("test", test, train)) if set(a) - set(b)]
    return f"class folders differ between train/ and test/ ({'; '.join(parts)}): both need the same class names"


def train_batches(cfg: TrainConfig, x, y):
    """The augmented, shuffled batches of P1 and P2 (batch 125; a last partial batch is
    dropped so every BN batch has the same size)."""
    from ..data import Batches

    augment = dict(flip=cfg.flip, crop_pad=cfg.crop_pad, cutout=cfg.cutout)
    return Batches(x, y, batch_size=cfg.batch_size, shuffle=True, drop_last=len(x) >= cfg.batch_size,
                   augment=augment if any(augment.values()) else False, seed=cfg.seed)
