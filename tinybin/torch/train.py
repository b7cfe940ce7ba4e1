"""`python -m tinybin train` on PyTorch: one GPU, or data-parallel over N with torchrun.

    python -m tinybin.torch.train --width 10 --subset 0 --epochs 300 --out runs/w10     (one GPU, or the CPU)
    torchrun --nproc_per_node 4 -m tinybin.torch.train --width 10 --subset 0 --epochs 300 --out runs/w10
    torchrun --nproc_per_node 4 -m tinybin.torch.train --resume --out runs/w10          (continue it)

The run is tinybin's (tinybin.train.run): the same flags and defaults, recipe (McDonnell et al.
2019 §III), initial weights for the same --seed, batches, run folder (checkpoint.npz,
metrics.jsonl, steps.jsonl, curves.png, written by rank 0 after every epoch), --resume,
--stop-after, --keep-going, final test and messages. Only the engine differs
(tinybin.torch.engine): --batch-size is the *global* batch, split over the processes, and the
flags of the PyTorch group below choose the device. The default --out ends in "-torch".
Bad flags end with one line and exit status 2 (under torchrun: from rank 0, before any process
group starts); a diverged run with exit status 3. When a process of the group ends (killed, out
of memory), the others stop with one line naming its rank; the checkpoint of the last finished
epoch stays in --out for --resume.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import warnings

import numpy as np
import torch

from ..cli import formatter
from ..cli import train as cli_train
from ..cli.errors import UsageError, reported
from ..train import Diverged, TrainConfig, train
from . import distributed
from .engine import TorchEngine


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def build_parser():
    p = Parser(prog="python -m tinybin.torch.train", description=__doc__, formatter_class=formatter)
    cli_train.add_arguments(p)
    for action in p._actions:   # the two flags whose meaning this trainer extends
        action.help = {"out": "run folder for checkpoint.npz, metrics.jsonl, curves.png; default "
                              "runs/wrn<depth>-<width>-<variant>-<bits>bit-seed<seed>-torch",
                       "batch_size": "images per SGD step: the global batch, split over the processes"
                       }.get(action.dest, action.help)
    g = p.add_argument_group("PyTorch (what differs from python -m tinybin train)")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto: a CUDA GPU per process if there is one, else the CPU")
    g.add_argument("--backend", choices=["auto", "gloo", "nccl"], default="auto",
                   help="torchrun's process group: auto = NCCL on GPUs, gloo on CPUs")
    g.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="float64 for exactness checks")
    g.add_argument("--channels-last", action="store_true", help="keep activations and weights channels_last (GPUs)")
    return p


def parse(argv, rank0):
    """The flags, checked (UsageError, one line) before any process group starts: the run
    (tinybin's own checks, `python -m tinybin train`'s), then the devices and the processes."""
    with contextlib.redirect_stdout(sys.stdout if rank0 else io.StringIO()):  # --help: once
        args = build_parser().parse_args(argv)
    args.argv = argv  # what was typed: --resume tells typed flags from defaults
    if args.out is None:
        fields = TrainConfig.__dataclass_fields__
        args.out = f"{TrainConfig(**{k: v for k, v in vars(args).items() if k in fields}).run_dir()}-torch"
    cfg = cli_train.config(args)
    world = int(os.environ["WORLD_SIZE"]) if distributed.launched_by_torchrun() else 1
    if cfg.batch_size < world:
        raise UsageError(f"--batch-size {cfg.batch_size} is smaller than the {world} processes")
    with reported():
        distributed.check_devices(args.backend, args.device)
    return args, cfg


def stopped_line(rank, world, out) -> str | None:
    """The one line a process prints when another of its group has ended, or None: the line is
    printed once, by the lowest-numbered survivor that sees which ranks ended (or by rank 0)."""
    ended = distributed.ended_ranks(world)
    if rank != min(set(range(world)) - set(ended), default=rank):
        return None
    who = f"rank {', '.join(map(str, ended))}" if ended else "another process (on another node?)"
    try:
        with np.load(os.path.join(out, "checkpoint.npz")) as f:
            epoch = f"epoch {json.loads(str(f['meta']))['epoch']}"
    except (OSError, KeyError, ValueError):
        epoch = "its last finished epoch"
    return f"error: {who} ended, so the others stopped; {out}/checkpoint.npz holds {epoch}: continue with --resume"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    rank0 = not distributed.launched_by_torchrun() or int(os.environ["RANK"]) == 0
    warnings.formatwarning = lambda message, *rest, **kw: f"warning: {message}\n"
    if not rank0:
        warnings.simplefilter("ignore")   # said once, by rank 0

    def log(message):
        if rank0:
            print(message, flush=True)

    try:
        args, cfg = parse(argv, rank0)
    except UsageError as e:
        if rank0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    rank, world, device, bn_group = distributed.setup(args.backend, args.device)
    engine = TorchEngine(device, rank, world, bn_group, getattr(torch, args.dtype), args.channels_last)
    if world > 1:
        distributed.stop_on_sigterm()
    try:
        with reported():
            result = train(cfg, resume=args.resume, overwrite=args.overwrite, log=log, engine=engine)
        return 0 if result.get("diverged") is None else 3
    except UsageError as e:   # data that cannot be loaded, a checkpoint that does not fit
        if rank0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    except Diverged as d:
        if rank0:
            print(f"{d}; metrics and the last good checkpoint are in {d.out}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    except (distributed.Stopped, torch.distributed.DistError, RuntimeError) as e:
        if world == 1 or (isinstance(e, RuntimeError) and not _lost_peer(e)):
            raise
        distributed.stop_on_sigterm(False)   # torchrun's SIGTERM may follow a lost connection: say it once
        line = stopped_line(rank, world, cfg.out)
        if line is not None:
            print(line, file=sys.stderr, flush=True)
        return 1
    finally:
        if world > 1:
            distributed.stop_on_sigterm(False)
        distributed.teardown()


def _lost_peer(error) -> bool:
    """A collective failed because a process of the group is gone (gloo and NCCL say it so)."""
    text = str(error).lower()
    return any(w in text for w in ("connection", "peer", "closed", "timed out", "broken pipe"))


if __name__ == "__main__":
    sys.exit(main())
