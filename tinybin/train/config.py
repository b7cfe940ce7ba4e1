"""What defines a run: TrainConfig, its validation, and the data and batches it names."""
from __future__ import annotations

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

    def validate(self):
        """ValueError naming the first setting that cannot work (before any data is read)."""
        check_arguments(self.depth, self.width, 10, self.variant, self.bits, self.temperature, self.padding)
        if self.bn_stats not in ("recalibrated", "moving"):
            raise ValueError(f"bn_stats must be 'recalibrated' or 'moving', got {self.bn_stats!r}")
        if self.on_diverge not in ("stop", "continue"):
            raise ValueError(f"on_diverge must be 'stop' or 'continue', got {self.on_diverge!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be positive")
        return self


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
    """The augmented, shuffled batches of P1 and P2 (batch 125; a last partial batch is
    dropped so every BN batch has the same size)."""
    from ..data import Batches

    augment = dict(flip=cfg.flip, crop_pad=cfg.crop_pad, cutout=cfg.cutout)
    return Batches(x, y, batch_size=cfg.batch_size, shuffle=True, drop_last=len(x) >= cfg.batch_size,
                   augment=augment if any(augment.values()) else False, seed=cfg.seed)
