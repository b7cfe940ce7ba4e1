"""`python -m tinybin evaluate SOURCE`: test accuracy of any model tinybin.loader reads."""
from __future__ import annotations

import dataclasses
import time
import warnings
from pathlib import Path

from ..data import load_cifar10, load_cifar10_subset, load_cifar100, stratified_sample
from ..export import packed_arch
from ..loader import load_model
from ..train import TrainConfig, bn_layers, evaluate, load_data, set_bn_stats
from ..train.run_record import run_differences
from ..zoo import load_npz_images
from .errors import UsageError, reported


def add_arguments(p):
    p.add_argument("source", nargs="?", default=None,
                   help="a checkpoint.npz written by `train` (or its run folder), a packed export (.npz), or "
                        "the authors' model: cifar10, cifar100 or a .mat file")
    p.add_argument("--mcdonnell", metavar="MODEL", nargs="?", const="cifar10", default=None,
                   help="evaluate the authors' released 1-bit WRN-20-10: cifar10 (shipped, the default), "
                        "cifar100 (downloaded on first use) or a .mat FILE")
    p.add_argument("--npz", metavar="FILE", default=None,
                   help="test images from an .npz holding x (N,32,32,3) uint8 and y")
    p.add_argument("--dataset", choices=("cifar10-subset", "cifar10", "cifar100", "folder"), default=None,
                   help="default: the dataset a checkpoint was trained on; else by the number of classes")
    p.add_argument("--data-dir", default=None,
                   help="where the test data is found (archive cache, or the image-folder root); "
                        "default: a checkpoint's own, else $TINYBIN_DATA or ./datasets")
    p.add_argument("--archive", default=None,
                   help="a CIFAR archive in the official layout to test on (no download)")
    p.add_argument("--test-subset", type=int, default=None,
                   help="N test images, every class in proportion (seeded); default all")
    p.add_argument("--bn-stats", choices=["recalibrated", "moving"], default=None,
                   help="BN inference statistics; default: what the run chose (moving averages if it never "
                        "recalibrated)")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass (memory, not accuracy)")


def test_images(args, model, meta):
    """(x, y, where they came from) for the model: --npz, a checkpoint's own dataset, or by classes."""
    if args.npz is not None:
        return *load_npz_images(args.npz), args.npz
    if meta is not None:                      # a checkpoint: its own data unless told otherwise
        cfg = TrainConfig(**meta["config"])
        # only the test images are used: no subset, and no batch size to check against the training images
        cfg = dataclasses.replace(cfg, subset=None, test_subset=None, batch_size=1, dataset=args.dataset or cfg.dataset,
                                  data_dir=args.data_dir if args.data_dir is not None else cfg.data_dir,
                                  archive=args.archive if args.archive is not None else cfg.archive)
        _, (x, y), _ = load_data(cfg)
        return x, y, cfg.archive or cfg.dataset
    classes = model.config["num_classes"]
    dataset = args.dataset or ("cifar100" if classes == 100 else "cifar10-subset")
    if dataset == "cifar10-subset" and args.archive is None:
        return *load_cifar10_subset(args.data_dir)[1], "the shipped CIFAR-10 subset"
    if dataset == "folder":
        raise ValueError("a model without its training config is evaluated on cifar10-subset, cifar10, cifar100 "
                         "or --npz images")
    load = load_cifar100 if dataset == "cifar100" else load_cifar10
    return *load(data_dir=args.data_dir, archive=args.archive)[1], args.archive or dataset


def bn_statistics(model, asked, info, packed=None) -> str:
    """Set the BN statistics evaluation uses (asked, or what the run chose) and say which they are.
    ValueError when recalibrated ones are asked for but were never computed, or when a packed
    file (`packed`: its arch record) holds other ones."""
    bns = bn_layers(model)  # frozen ones (a fixed input normalisation) have only their fitted statistics
    if not bns:
        return "no BN layers with batch statistics" if model.batch_norms() else "no BN layers"
    if packed is not None:  # one set of statistics, the one export packed: nothing to choose
        held = packed.get("bn_stats")
        if held is None:
            return "BN statistics: the packed ones (this file does not record which)"
        if asked is not None and asked != held:
            raise ValueError(f"{info['name']} holds only the {_shown(held)} BN statistics, which export packed; "
                             f"--bn-stats {asked} needs the checkpoint it was exported from")
        return f"BN statistics: {_shown(held)} (packed)"
    recalibrated = all(int(bn.calib_batches) > 0 for bn in bns)
    if asked == "recalibrated" and not recalibrated:
        meta = info["meta"]
        if meta is not None:
            where = meta["config"]["out"]
            raise ValueError(f"{where} has no recalibrated BN statistics: they were never computed (that happens when "
                             f"training ends, and this run stopped at epoch {meta['epoch']} of {meta['config']['epochs']}); "
                             f"evaluate with "
                             f"--bn-stats moving, or finish it with `python -m tinybin train --resume --out {where}`")
        raise ValueError(f"{info['name']} holds no recalibrated BN statistics (never computed): evaluate with "
                         f"--bn-stats moving")
    which = asked or ("recalibrated" if recalibrated and bns[0].inference_stats != "moving" else "moving")
    set_bn_stats(model, which)
    return f"BN statistics: {_shown(which)}"


def _shown(which):
    return "moving averages" if which == "moving" else which


def checkpoint_note(source, meta):
    """A warning when a run folder's checkpoint is not the run its run.json records (copied in from another run)."""
    folder = Path(source) if Path(source).is_dir() else Path(source).parent
    differences = run_differences(folder, meta)
    if differences:
        warnings.warn(f"{folder / 'checkpoint.npz'} is not the run {folder / 'run.json'} records "
                      f"({'; '.join(differences)}): evaluating the checkpoint, written in {meta['config'].get('out')}")


def run(args) -> int:
    if (args.source is None) == (args.mcdonnell is None):
        raise UsageError("evaluate needs one model: a checkpoint, a packed export or a .mat file, or --mcdonnell")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size} cannot work: it must be at least 1")
    with reported():
        model, info = load_model(args.source if args.source is not None else args.mcdonnell, args.data_dir)
        packed = packed_arch(args.source) if info["kind"] == "packed" else None
        if info["kind"] == "checkpoint":
            checkpoint_note(args.source, info["meta"])
        stats = bn_statistics(model, args.bn_stats, info, packed)  # before the data: a mistake here is found at once
        x, y, source = test_images(args, model, info["meta"])
        if args.test_subset:
            x, y = stratified_sample(x, y, args.test_subset)
        classes = model.config["num_classes"]
        if y.max() >= classes:
            raise ValueError(f"labels go up to {y.max()} but the model has {classes} classes: wrong dataset?")
    t = time.perf_counter()
    loss, acc = evaluate(model, x, y, batch_size=args.batch_size)
    seconds = time.perf_counter() - t
    print(f"{info['name']}: test accuracy {100 * acc:.2f} % on {len(x)} images ({round(acc * len(x))}/{len(x)}) "
          f"of {source}, {stats} (loss {loss:.4f}; {len(x) / seconds:.1f} images/s)")
    return 0
