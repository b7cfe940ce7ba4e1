"""Data-parallel training of tinybin's WRN with torch.distributed; the result is a tinybin run.

    torchrun --nproc_per_node 4 -m tinybin.torch.train --width 10 --subset 0 --epochs 300 --out runs/w10
    python -m tinybin.torch.train ...            (one process: one GPU, or the CPU)

The recipe is tinybin's (McDonnell et al. 2019 §III): SGD momentum 0.9, weight decay 5e-4 on
conv latent weights, cosine per batch, flip + random-fill crop + cutout (tinybin's own numpy
augmentation), BN statistics recalibrated after training. --batch-size is the *global* batch:
every process builds the same augmented batch (seeded by seed, epoch and batch index, as
tinybin does) and takes its 1/N share; batch norm uses the statistics of the whole batch
(all-reduced sums, in forward and backward) and DDP averages the gradients, so one step on N
processes is one tinybin step on the global batch. The initial weights are tinybin's for the
same --seed. The run folder (checkpoint.npz, metrics.jsonl, steps.jsonl, curves.png) is
tinybin's: `python -m tinybin evaluate RUNDIR`, `export` and the probes read it.
Bad flags end with one line and exit status 2; a diverged run with exit status 3.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as TF
from torch.nn.parallel import DistributedDataParallel

from ..data import ArchiveError, Batches, DownloadError, stratified_sample
from ..models import wrn
from ..optim import Schedule
from ..train.divergence import same_output
from . import distributed
from .checkpoint import (
    DivergenceDetector,
    TrainConfig,
    load_data,
    plot_curves,
    run_config,
    save_tinybin_checkpoint,
)
from .convert import synchronise_batch_norm, to_torch
from .optim import make_sgd


class UsageError(Exception):
    """A bad flag or missing data: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    d = TrainConfig()
    p = Parser(prog="torchrun --nproc_per_node N -m tinybin.torch.train", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["cifar10", "cifar100", "folder"], default=d.dataset)
    p.add_argument("--data-dir", default=d.data_dir, help="archive cache, or the root of train/ and test/ folders")
    p.add_argument("--archive", default=d.archive, help="a CIFAR archive in the official layout")
    p.add_argument("--subset", type=int, default=d.subset, help="class-balanced training subset; 0 = all")
    p.add_argument("--test-subset", type=int, default=d.test_subset, help="N test images (default all)")
    p.add_argument("--epoch-eval-size", type=int, default=d.epoch_eval_size, help="test images after each epoch; 0 = all")
    for flag, kind in (("depth", int), ("width", int), ("variant", str), ("bits", int), ("temperature", float),
                       ("padding", str), ("epochs", int), ("lr", float), ("lr_min", float), ("schedule", str),
                       ("momentum", float), ("weight_decay", float), ("crop_pad", int), ("cutout", int), ("seed", int)):
        p.add_argument("--" + flag.replace("_", "-"), type=kind, default=getattr(d, flag))
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="global batch, split over the processes")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=d.flip)
    p.add_argument("--bn-stats", choices=["recalibrated", "moving"], default=d.bn_stats)
    p.add_argument("--out", default=None, help="run folder (default runs/wrn<depth>-<width>-<variant>-<bits>bit-seed<seed>-torch)")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto", help="auto: NCCL with CUDA, else gloo")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="float64 for exactness checks")
    p.add_argument("--channels-last", action="store_true", help="keep activations and weights channels_last (GPUs)")
    return p


def check(args, world):
    """Validate the flags (ValueError: one line); returns (run config, run folder, whether T is the
    authors' default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = wrn(depth=args.depth, width=args.width, variant=args.variant, bits=args.bits,
                    temperature=args.temperature, padding=args.padding, num_classes=10)
    if args.schedule not in ("cosine", "restarts", "constant"):
        raise ValueError(f"--schedule must be cosine, restarts or constant, got {args.schedule!r}")
    if args.epochs < 1 or args.batch_size < 1:
        raise ValueError("--epochs and --batch-size must be positive")
    if args.batch_size < world:
        raise ValueError(f"--batch-size {args.batch_size} is smaller than the {world} processes")
    out = Path(args.out or f"runs/wrn{args.depth}-{args.width}-{args.variant}-{args.bits}bit-seed{args.seed}-torch")
    if (out / "checkpoint.npz").exists() and not args.overwrite:
        raise ValueError(f"{out} already holds a run; choose another --out or pass --overwrite")
    cfg = run_config(**{**vars(args), "subset": args.subset or None, "epoch_eval_size": args.epoch_eval_size or None,
                        "out": str(out), "temperature": model.config["temperature"] if args.temperature is None
                        else args.temperature})
    return cfg, out, args.temperature is None and model.config["temperature"] is not None


@torch.no_grad()
def evaluate(net, x, y, device, batch_size=500):
    """(mean loss, accuracy) in eval mode, single centre view; the mode is restored."""
    was_training, loss, correct = net.training, 0.0, 0
    net.eval()
    for i in range(0, len(x), batch_size):
        logits = net(torch.from_numpy(np.asarray(x[i:i + batch_size])).to(device))
        yb = torch.from_numpy(np.asarray(y[i:i + batch_size], np.int64)).to(device)
        loss += float(TF.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    net.train(was_training)
    return loss / max(len(x), 1), correct / max(len(x), 1)


def no_buffer_sync():
    """DDP's keyword for "do not broadcast buffers every forward" (renamed in torch 2.13)."""
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def share(xb, yb, rank, world, device):
    """This process's slice of the global batch (shares differ by at most one image), on its device."""
    bounds = np.linspace(0, len(xb), world + 1).round().astype(int)
    part = slice(bounds[rank], bounds[rank + 1])
    return (torch.from_numpy(xb[part]).to(device, non_blocking=True),
            torch.from_numpy(yb[part]).to(device, non_blocking=True))


def global_sum(values, device, world):
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        torch.distributed.all_reduce(t)
    return t.tolist()


def train(args, rank, world, device, bn_group, log):
    cfg, out, default_t = check(args, world)
    downloader = int(os.environ.get("LOCAL_RANK", "0")) == 0   # one download per node; the others wait
    if world > 1 and not downloader:
        torch.distributed.barrier()
    (xtr, ytr), (xte, yte), _ = load_data(TrainConfig(**cfg))
    if world > 1 and downloader:
        torch.distributed.barrier()
    num_classes = {"cifar10": 10, "cifar100": 100}.get(cfg["dataset"], int(max(ytr.max(), yte.max())) + 1)
    if default_t:
        log(f"note: variant {args.variant} uses the authors' temperature T={cfg['temperature']:g}")
    arch = {k: cfg[k] for k in ("depth", "width", "variant", "bits", "temperature", "padding")}
    net = to_torch(wrn(num_classes=num_classes, rng=np.random.default_rng(args.seed), **arch)).to(device, getattr(torch, args.dtype))
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    synchronise_batch_norm(net, bn_group)
    # BN buffers stay equal on every process (synchronised statistics): no per-step broadcast
    model = DistributedDataParallel(net, **no_buffer_sync()) if world > 1 else net
    optimizer = make_sgd(net, args.lr, args.momentum, args.weight_decay)
    augment = {"flip": args.flip, "crop_pad": args.crop_pad, "cutout": args.cutout}
    loader = Batches(xtr, ytr, batch_size=args.batch_size, shuffle=True, drop_last=len(xtr) >= args.batch_size,
                     augment=augment if any(augment.values()) else False, seed=args.seed)
    steps_per_epoch, total = len(loader), len(loader) * args.epochs
    schedule = Schedule(args.schedule, total, steps_per_epoch, args.lr, args.lr_min)
    eval_x, eval_y = stratified_sample(xte, yte, cfg["epoch_eval_size"])
    detector = DivergenceDetector(num_classes, cfg["explode_factor"], cfg["dead_window"])

    def meta(epoch, **extra):
        return dict(config=cfg, arch=dict(net.config), num_classes=num_classes, epoch=epoch,
                    step=epoch * steps_per_epoch, first_loss=detector.first_loss, trained_with="tinybin.torch", **extra)

    def append(name, records):
        if rank == 0:
            with open(out / name, "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("metrics.jsonl", "steps.jsonl"):
            (out / name).unlink(missing_ok=True)
        save_tinybin_checkpoint(out / "checkpoint.npz", net, optimizer, meta(0))
        c = net.config
        log(f"WRN-{c['depth']}-{c['width']} {c['variant']}, {c['bits']}-bit, {sum(p.numel() for p in net.parameters()):,} "
            f"parameters; {len(xtr)} training / {len(xte)} test images; {args.epochs} epochs × {steps_per_epoch} steps "
            f"of {args.batch_size} over {world} process(es); {device}; out {out}")
    model.train()
    for epoch in range(args.epochs):
        start, records, sums = time.perf_counter(), [], np.zeros(3)
        for b, (xb, yb) in enumerate(loader.epoch(epoch)):
            step = epoch * steps_per_epoch + b
            lr = schedule(step)
            x, y = share(xb, yb, rank, world, device)
            optimizer.set_lr(lr)
            optimizer.zero_grad(set_to_none=True)
            logits = model(x)
            # summed over this share, divided by the mean share: DDP's average over processes then
            # is the gradient of the mean loss over the global batch, even for unequal shares
            loss = TF.cross_entropy(logits, y, reduction="sum") * (world / len(xb))
            loss.backward()
            optimizer.step()
            same = same_output(logits.detach().cpu().numpy())                  # "dead": tinybin.train.divergence
            local = [float(loss.detach()) * len(xb) / world, int((logits.argmax(1) == y).sum()), len(y), int(same)]
            total_loss, correct, n, same_shares = global_sum(local, device, world)  # over the global batch
            sums += (total_loss, correct, n)
            records.append({"step": step, "epoch": epoch, "lr": lr, "loss": total_loss / n, "acc": correct / n})
            reason = detector.check(total_loss / n, same_shares == world)
            if reason is not None:
                append("steps.jsonl", records)
                append("metrics.jsonl", [{"kind": "diverged", "step": step, "loss": total_loss / n, "reason": reason}])
                log(f"diverged at step {step} (loss={total_loss / n:.4g}, {reason}); metrics and the last good "
                    f"checkpoint are in {out}")
                return 3
        seconds = time.perf_counter() - start
        append("steps.jsonl", records)
        if rank == 0:
            test_loss, test_acc = evaluate(net, eval_x, eval_y, device)
            record = {"kind": "epoch", "epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "lr": lr,
                          "train_loss": sums[0] / sums[2], "train_acc": sums[1] / sums[2], "test_loss": test_loss,
                          "test_acc": test_acc, "test_images": len(eval_x), "bn_stats": "moving", "seconds": seconds,
                          "images_per_s": sums[2] / seconds}
            append("metrics.jsonl", [record])
            save_tinybin_checkpoint(out / "checkpoint.npz", net, optimizer, meta(epoch + 1))
            log(f"epoch {epoch + 1:3d}/{args.epochs}  loss {record['train_loss']:.4f}  train {100 * record['train_acc']:5.1f}%"
                f"  test {100 * test_acc:5.1f}% ({len(eval_x)})  lr {lr:.2e}  {record['images_per_s']:.0f} img/s  {seconds:.0f}s")
    return finish(net, loader, args, cfg, rank, world, device, (xte, yte), out, optimizer, meta, log)


def finish(net, loader, args, cfg, rank, world, device, test, out, optimizer, meta, log):
    """Moving-average test, then (the papers') BN recalibration over one epoch of augmented
    batches — on every process, each its share, statistics of the global batch — then the
    final test, the final checkpoint and curves.png."""
    result = {"bn_stats": args.bn_stats}
    if rank == 0:
        result["test_acc_moving"] = evaluate(net, *test, device)[1]
    if args.bn_stats == "recalibrated":
        start = time.perf_counter()
        bns = [m for _, m in net.batch_norms()]
        for bn in bns:
            bn.start_recalibration()
        with torch.no_grad():
            for n, (xb, yb) in enumerate(loader.epoch(args.epochs), 1):
                net(share(xb, yb, rank, world, device)[0])
        for bn in bns:
            bn.finish_recalibration()
        for bn in bns:
            bn.inference_stats = "recalibrated"
        log(f"BN statistics recalibrated over {n} augmented batches ({time.perf_counter() - start:.0f}s)")
    else:
        for _, bn in net.batch_norms():
            bn.inference_stats = "moving"
    if rank == 0:
        result["test_loss"], result["test_acc"] = evaluate(net, *test, device)
        result["test_images"] = len(test[0])
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(dict(kind="final", out=str(out), epochs_done=args.epochs, **result)) + "\n")
        save_tinybin_checkpoint(out / "checkpoint.npz", net, optimizer,
                                meta(args.epochs, bn_stats=args.bn_stats, test_acc=result["test_acc"]))
        plot_curves(out)
        log(f"test accuracy: {100 * result['test_acc']:.2f} % on {len(test[0])} images (BN statistics {args.bn_stats};"
            f" with moving averages {100 * result['test_acc_moving']:.2f} %); run in {out}")
    return 0


def main(argv=None) -> int:
    warnings.formatwarning = lambda message, *rest, **kw: f"warning: {message}\n"
    is_rank0 = distributed.launched_by_torchrun() is False or int(os.environ["RANK"]) == 0

    if not is_rank0:
        warnings.simplefilter("ignore")   # said once, by rank 0

    def log(message):
        if is_rank0:
            print(message, flush=True)

    try:
        args = build_parser().parse_args(argv)
        world = int(os.environ.get("WORLD_SIZE", "1")) if distributed.launched_by_torchrun() else 1
        check(args, world)   # every flag mistake, before any process group exists
        rank, world, device, bn_group = distributed.setup(args.backend)
    except (UsageError, ValueError) as e:
        if is_rank0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        return train(args, rank, world, device, bn_group, log)
    except (ValueError, FileNotFoundError, ArchiveError, DownloadError) as e:   # data that cannot be loaded
        if is_rank0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        distributed.teardown()


if __name__ == "__main__":
    sys.exit(main())
