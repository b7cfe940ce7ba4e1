"""`python -m tinybin export`: pack a 1-bit model one bit per weight, and count its operations."""
from __future__ import annotations

import json
from pathlib import Path

from ..embedded import comparison_report, format_op_counts, op_counts
from ..export import pack
from ..io import save_npz
from ..loader import load_model
from ..models import conv_weight_count, wrn
from ..models.wrn import temperature_for
from .errors import UsageError, reported


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def add_arguments(p):
    p.add_argument("source", nargs="?", default=None,
                   help="a checkpoint.npz written by `train` (or its run folder), or the authors' .mat model")
    p.add_argument("--out", default=None, help="write the packed model here (.npz)")
    p.add_argument("--no-fold", action="store_true",
                   help="keep the ×1/T layer of srelu/elu separate instead of folding it into the head conv "
                        "(folding is the default)")
    p.add_argument("--report", action="store_true",
                   help="print multiplications, additions, comparisons and bytes per layer for one image, "
                        "and baseline2 against srelu of the same size")
    p.add_argument("--arch", default="20-10", help="DEPTH-WIDTH of a fresh model for --report without a source")
    p.add_argument("--variant", default="baseline2", help="variant of that fresh model")
    p.add_argument("--classes", type=int, default=10, help="classes of that fresh model")


def run(args) -> int:
    if args.out is None and not args.report:
        raise UsageError("nothing to do: give --out FILE to export, and/or --report")
    if args.source is None and args.out is not None:
        raise UsageError("export needs a checkpoint (or an authors' .mat file) to pack")
    with reported():
        if args.source is not None:
            model = load_model(args.source)[0]
        else:
            try:
                depth, width = (int(v) for v in args.arch.split("-"))
            except ValueError:
                raise ValueError(f"--arch takes DEPTH-WIDTH, e.g. 20-10, not {args.arch!r}") from None
            model = wrn(depth, width, num_classes=args.classes, variant=args.variant, bits=1, rng=0,
                        temperature=temperature_for(args.variant, 1, args.classes))
        if args.out is not None:
            arrays = pack(model, fold_temperature=not args.no_fold)
            save_npz(args.out, arrays)
    c = model.config
    name = f"WRN-{c['depth']}-{c['width']} {c['variant']}, {c['num_classes']} classes"
    if args.out is not None:
        n = conv_weight_count(model)
        bits = sum(v.nbytes for k, v in arrays.items() if k.startswith("conv/"))
        stats = sum(v.nbytes for k, v in arrays.items() if k.startswith("bn/"))
        size = Path(args.out).stat().st_size
        which = json.loads(arrays["arch"].tobytes().decode())["bn_stats"]
        which = f" ({'moving averages' if which == 'moving' else which})" if which else ""
        print(f"{name}: wrote {args.out}, {_megabytes(size)} = {_megabytes(bits)} of weight bits ({n:,} weights) + "
              f"{_megabytes(stats)} of BN statistics{which} + {_megabytes(size - bits - stats)} of layout; "
              f"as float32 weights {_megabytes(4 * n)} ({4 * n / size:.0f}× larger)")
        if json.loads(arrays["arch"].tobytes().decode())["temperature_folded"]:
            print(f"the ×1/T layer (T = {c['temperature']:g}) is folded into head.conv's multiplier")
    if args.report:
        print(format_op_counts(op_counts(model), title=f"{name}: operations for one 32×32 image"))
        print()
        print(comparison_report(c["depth"], c["width"], c["num_classes"]))
    return 0
