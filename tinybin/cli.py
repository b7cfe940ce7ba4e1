"""`python -m tinybin <command>`: train, evaluate, bench (and commands added by other modules).

Each command is a module-level pair `add_arguments(parser)` / `run(args) -> exit code`, listed in
COMMANDS; `bench` dispatches to BENCHES the same way (each bench module exposes
`add_arguments(parser)` and `run_bench(args)`). A module that is not there yet is listed in
--help and reports itself as unavailable.

Errors a user can cause (an unknown variant, a depth that is not 6n+2, missing data) end with
one line on stderr and a non-zero exit, not a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

# command -> (module, help). Each module has add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "train": ("tinybin.cli", "train a WRN on CIFAR-10/100 or an image folder"),
    "evaluate": ("tinybin.cli", "test accuracy of a checkpoint"),
    "bench": ("tinybin.cli", "benchmarks: conv, data, train, infer"),
    "export": ("tinybin.export", "pack a 1-bit checkpoint one bit per weight"),
}
# bench name -> module with add_arguments(parser) and run_bench(args)
BENCHES = {
    "conv": "tinybin.kernels.bench",
    "data": "tinybin.data.bench",
    "train": "tinybin.bench_train",
    "infer": "tinybin.bench_infer",
}


class UsageError(Exception):
    """A mistake in the command line or the data it names: reported in one line."""


def _formatter(prog):
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


# --------------------------------------------------------------------------------- train


def add_train_arguments(p):
    from .models.wrn import PADDINGS, VARIANTS
    from .train import DATASETS, TrainConfig

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
    g.add_argument("--variant", default=d.variant, help=f"one of {', '.join(VARIANTS)}")
    g.add_argument("--bits", type=int, default=d.bits, help="1 or 32 bits per conv weight")
    g.add_argument("--temperature", type=float, default=d.temperature,
                   help="T of srelu/elu; default the authors' (40 1-bit, 80 32-bit, 25 CIFAR-100)")
    g.add_argument("--padding", choices=PADDINGS, default=d.padding, help="padding of stride-2 layers")
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
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    g.add_argument("--stop-after", type=int, default=d.stop_after, help="stop after N epochs (resume later)")
    g.add_argument("--keep-going", action="store_true", help="do not stop when the loss diverges")


def run_train(args) -> int:
    from .data import ArchiveError, DownloadError
    from .models import wrn
    from .train import Diverged, TrainConfig, load_data, train

    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields},
                      on_diverge="continue" if args.keep_going else "stop")
    cfg.subset = cfg.subset or None
    cfg.epoch_eval_size = cfg.epoch_eval_size or None
    data = None
    if not args.resume:
        try:  # every mistake a user can make shows up here, before any training
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wrn(depth=cfg.depth, width=cfg.width, variant=cfg.variant, bits=cfg.bits,
                    temperature=cfg.temperature, padding=cfg.padding, num_classes=10)
            if cfg.epochs < 1 or cfg.batch_size < 1:
                raise ValueError("--epochs and --batch-size must be positive")
            xy_train, xy_test, _ = load_data(cfg)
            data = (xy_train, xy_test)
        except (ValueError, FileNotFoundError, ArchiveError, DownloadError) as e:
            raise UsageError(str(e)) from None
    elif not (cfg.run_dir() / "checkpoint.npz").is_file():
        raise UsageError(f"nothing to resume: no checkpoint in {cfg.run_dir()}")
    try:
        result = train(cfg, data=data, resume=args.resume)
    except Diverged as d:
        print(f"{d}; metrics and the last good checkpoint are in {d.out}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    return 0 if result.get("diverged") is None else 3


# --------------------------------------------------------------------------------- evaluate


def add_evaluate_arguments(p):
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="a checkpoint.npz written by `train`, or its run folder (or use --mcdonnell)")
    p.add_argument("--mcdonnell", metavar="MODEL", nargs="?", const="cifar10", default=None,
                   help="evaluate the authors' released 1-bit WRN-20-10 instead of a checkpoint: cifar10 (shipped, "
                        "the default), cifar100 (downloaded on first use) or a .mat FILE")
    p.add_argument("--npz", metavar="FILE", default=None,
                   help="with --mcdonnell: test images from an .npz holding x (N,32,32,3) uint8 and y")
    p.add_argument("--dataset", choices=("cifar10-subset", "cifar10", "cifar100", "folder"), default=None,
                   help="default: the dataset the checkpoint was trained on")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--archive", default=None)
    p.add_argument("--test-subset", type=int, default=None,
                   help="N test images, every class in proportion (seeded); default all")
    p.add_argument("--bn-stats", choices=["recalibrated", "moving"], default=None,
                   help="default: what the run chose")
    p.add_argument("--batch-size", type=int, default=500)


def run_evaluate(args) -> int:
    import dataclasses
    import time

    from .data import ArchiveError, DownloadError
    from .train import TrainConfig, evaluate, load_checkpoint, load_data, set_bn_stats

    if args.mcdonnell is not None:
        from .zoo import run_evaluate as run_evaluate_mcdonnell
        return run_evaluate_mcdonnell(args)
    if args.checkpoint is None or args.npz is not None:
        raise UsageError("evaluate needs a checkpoint, or --mcdonnell FILE (--npz works only with --mcdonnell)")
    try:
        model, meta = load_checkpoint(args.checkpoint)
        cfg = TrainConfig(**meta["config"])
        cfg = dataclasses.replace(cfg, subset=None, test_subset=args.test_subset,
                                  dataset=args.dataset or cfg.dataset,
                                  data_dir=args.data_dir if args.data_dir is not None else cfg.data_dir,
                                  archive=args.archive if args.archive is not None else cfg.archive)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, (x, y), _ = load_data(cfg)
        if args.bn_stats:
            set_bn_stats(model, args.bn_stats)
    except (ValueError, FileNotFoundError, ArchiveError, DownloadError, RuntimeError) as e:
        raise UsageError(str(e)) from None
    t = time.perf_counter()
    loss, acc = evaluate(model, x, y, batch_size=args.batch_size)
    seconds = time.perf_counter() - t
    c = meta["arch"]
    print(f"WRN-{c['depth']}-{c['width']} {c['variant']} {c['bits']}-bit, epoch {meta['epoch']}: "
          f"test accuracy {100 * acc:.2f} % on {len(x)} images (loss {loss:.4f}; {len(x) / seconds:.0f} images/s)")
    return 0


# --------------------------------------------------------------------------------- bench


def add_bench_arguments(p):
    sub = p.add_subparsers(dest="bench", metavar="{" + ",".join(BENCHES) + "}")
    sub.required = True
    for name, module in BENCHES.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            sub.add_parser(name, help="(not available in this version)", formatter_class=_formatter)
            continue
        bp = sub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None,
                            description=mod.__doc__, formatter_class=_formatter)
        mod.add_arguments(bp)


def run_bench(args) -> int:
    try:
        mod = importlib.import_module(BENCHES[args.bench])
    except ModuleNotFoundError:
        raise UsageError(f"bench {args.bench} is not available in this version") from None
    code = mod.run_bench(args)
    return code if isinstance(code, int) else 0  # some benchmarks return their figures


add_arguments = {"train": add_train_arguments, "evaluate": add_evaluate_arguments, "bench": add_bench_arguments}
run = {"train": run_train, "evaluate": run_evaluate, "bench": run_bench}


# --------------------------------------------------------------------------------- main


def build_parser(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tinybin", formatter_class=_formatter,
                                     description="tinybin: 1-bit-per-weight, BN-free wide ResNets in NumPy + Numba")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    sub.required = True
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_formatter)
        if name == "bench" and (not argv or argv[0] != "bench"):
            continue  # the bench modules are imported only when a bench is asked for
        if module == __name__:
            add_arguments[name](p)
        else:
            try:
                importlib.import_module(module).add_arguments(p)
            except ModuleNotFoundError:
                p.description = f"{help_text} (not available in this version)"
    return parser


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv=None) -> int:
    warnings.formatwarning = _one_line_warning
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    module = COMMANDS[args.command][0]
    try:
        if module == __name__:
            return run[args.command](args)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError:
            raise UsageError(f"{args.command} is not available in this version") from None
        return int(mod.run(args) or 0)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
