"""`python -m tinybin train`: the flags of TrainConfig, and a run with one-line errors.

The PyTorch trainer (tinybin.torch.train) takes the same flags and checks them here too."""
from __future__ import annotations

import argparse
import sys

from ..io import check_writable_folder
from ..models.wrn import ABLATIONS, INPUT_NORMS, PADDINGS, VARIANTS
from ..train import DATASETS, Diverged, TrainConfig, load_data, read_checkpoint, train
from ..train.config import resume_config
from ..train.folder import existing_run
from ..train.run_record import check_resume
from .errors import UsageError, reported


def add_arguments(p):

    d = TrainConfig()
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=d.dataset,
                   help="cifar10-subset: the 4000/1000 images shipped in datasets/ (no network); cifar10, "
                        "cifar100: the official archives, downloaded into --data-dir on first use; folder: "
                        "JPEG/PNG class folders")
    g.add_argument("--data-dir", default=d.data_dir,
                   help="archive cache folder (default $TINYBIN_DATA or ./datasets); for 'folder': a root "
                        "holding train/<class>/ and test/<class>/")
    g.add_argument("--archive", default=d.archive,
                   help="a CIFAR archive in the official layout to use instead (no download)")
    g.add_argument("--subset", type=int, default=d.subset, help="class-balanced training subset; 0 = all")
    g.add_argument("--test-subset", type=int, default=d.test_subset,
                   help="N test images, every class in proportion (seeded); default all")
    g.add_argument("--epoch-eval-size", type=int, default=d.epoch_eval_size,
                   help="test images evaluated after each epoch, every class in proportion (the final "
                        "evaluation uses all); 0 = all")
    g = p.add_argument_group("model")
    g.add_argument("--depth", type=int, default=d.depth, help="6n+2")
    g.add_argument("--width", type=int, default=d.width, help="k of WRN-depth-k")
    g.add_argument("--variant", default=d.variant, help=f"one of {', '.join(VARIANTS)} (ablation: {', '.join(ABLATIONS)})")
    g.add_argument("--bits", type=int, default=d.bits, help="1 or 32 bits per conv weight")
    g.add_argument("--temperature", type=float, default=d.temperature,
                   help="T of srelu/elu/mean-bn; default the authors' (40 1-bit, 80 32-bit, 25 CIFAR-100)")
    g.add_argument("--padding", choices=PADDINGS, default=d.padding, help="padding of stride-2 layers")
    g.add_argument("--input-norm", choices=INPUT_NORMS, default=d.input_norm,
                   help="how the input is normalised: bn = a batch-norm layer with learned g, o and batch "
                        "statistics (the authors' Keras code; default); fixed = per-channel mean and std of the "
                        "raw training images, computed once before training (the paper's text, Fig. 4 (iii): "
                        "pre-processing applied to each RGB channel)")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training set")
    g.add_argument("--lr", type=float, default=d.lr, help="initial learning rate")
    g.add_argument("--lr-min", type=float, default=d.lr_min, help="final learning rate")
    g.add_argument("--schedule", choices=["cosine", "restarts", "constant"], default=d.schedule,
                   help="cosine per batch (P2) or warm restarts of 2, 4, 8, ... epochs (P1)")
    g.add_argument("--momentum", type=float, default=d.momentum, help="SGD momentum (not Nesterov)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="on conv latent weights only")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="images per SGD step")
    g.add_argument("--cutout", type=int, default=d.cutout, help="cutout patch side; 0 = off")
    g.add_argument("--crop-pad", type=int, default=d.crop_pad, help="random pad + crop pixels; 0 = off")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=d.flip, help="horizontal flips, p=0.5")
    g.add_argument("--bn-stats", choices=["recalibrated", "moving"], default=d.bn_stats,
                   help="BN inference statistics: recalibrated after training (papers) or moving averages (Keras)")
    g.add_argument("--seed", type=int, default=d.seed, help="initial weights, subset, order and augmentation")
    g = p.add_argument_group("run")
    g.add_argument("--out", default=d.out, help="run folder for checkpoint.npz, metrics.jsonl, curves.png; "
                   "default runs/wrn<depth>-<width>-<variant>-<bits>bit-seed<seed>")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last checkpoint; only --epochs (the schedule then "
                        "spans the new length), --stop-after, --keep-going, --bn-stats, --data-dir and --archive "
                        "may differ from the saved run")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run --out holds (without it, a folder holding a run is refused)")
    g.add_argument("--stop-after", type=int, default=d.stop_after, help="stop after N epochs (resume later)")
    g.add_argument("--keep-going", action="store_true", help="do not stop when the loss diverges")


def typed_flags(argv) -> set:
    """The destinations of the flags the user typed in `train` argv (parsed again with every
    default replaced by a marker), so --resume can tell "--depth 20" from the default 20."""
    marker = object()
    p = argparse.ArgumentParser(add_help=False)
    add_arguments(p)
    p.set_defaults(**{a.dest: marker for a in p._actions})
    ns, _ = p.parse_known_args(argv)
    return {k for k, v in vars(ns).items() if v is not marker}


def config(args) -> TrainConfig:
    """The run the flags ask for, checked before any data is read or any process group starts:
    a new run's settings, or a resumed run's own (with the typed flags that may change).
    UsageError (one line) for every mistake found here."""
    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields},
                      on_diverge="continue" if args.keep_going else "stop")
    cfg.subset = cfg.subset or None
    cfg.epoch_eval_size = cfg.epoch_eval_size or None
    out = cfg.run_dir()
    if args.resume and args.overwrite:
        raise UsageError("--resume continues the run in --out, --overwrite replaces it: give one of them")
    if not args.resume:
        found = existing_run(out)
        if found and not args.overwrite:
            raise UsageError(f"{out} already holds a run ({', '.join(found)}); --resume continues it, "
                             f"--overwrite replaces it, or choose another --out")
        with reported():  # every mistake a user can make shows up here, before any data is read
            cfg.validate()
            check_writable_folder(out)  # not when the first save fails, after the training
        return cfg
    if not (out / "checkpoint.npz").is_file():
        raise UsageError(f"nothing to resume: no checkpoint in {out}")
    given = typed_flags(getattr(args, "argv", sys.argv[2:])) - {"resume", "overwrite", "keep_going"}
    requested = {k: getattr(cfg, k) for k in given if k in fields}
    if args.keep_going:
        requested["on_diverge"] = "continue"
    with reported():
        meta = read_checkpoint(out / "checkpoint.npz")[2]
        check_resume(out, meta)  # the folder's own run, its logs readable
        cfg = resume_config(meta, requested)
        check_writable_folder(out)
    return cfg


def run(args) -> int:
    cfg, data = config(args), None
    if not args.resume:
        with reported():  # the data's mistakes too, before any training
            data = load_data(cfg)[:2]
    try:
        result = train(cfg, data=data, resume=args.resume, overwrite=args.overwrite)
    except Diverged as d:
        print(f"{d}; metrics and the last good checkpoint are in {d.out}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0 if result.get("diverged") is None else 3
