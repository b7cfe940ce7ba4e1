"""The embedded argument (P2 §V.B) made concrete: 1-bit convs without multiplications, and the
bill of operations and bytes a network needs for one image.

**Add/subtract convolution.** With weights c·(2b − 1), a conv output is

    y[o] = c · ( Σ_{taps with b = 1} x  −  Σ_{taps with b = 0} x )

so the bits only choose whether each input activation is added or subtracted, and c is applied
once per output (or folded into whatever scale follows). `conv2d_addsub` computes exactly that
(no multiplication in the accumulation) and `addsub_forward(model, x)` runs a whole model with
its convs replaced by it; tests check it against the float path.

**Operation counts** (`op_counts`, `python -m tinybin export --report`), per image, at inference,
with these rules:

    1-bit conv      each output sums its window's real inputs (padding cells are skipped, not
                    added as zeros): additions = Σ_outputs (C_in·taps − 1), taps = the window's
                    in-bounds cells; multiplications = 1 per output (×c), none where a BN is
                    the conv's only reader (conv_a → BN, head conv → final BN: c folds into its
                    ×1/σ; not the stem, whose output is also the residual stream; the srelu
                    head's 1/T likewise folds into c); a 32-bit conv instead pays C_in·taps
                    multiplications per output.
                    (In the srelu net conv_a's c could move on too — max(−1, c·s) =
                    c·max(−1/c, s), and conv_b is linear — but only folds into the next layer
                    are counted, to keep the rules simple.)
                    bytes = one bit per weight + 4 for c (32-bit: 4 per weight)
    BN              per element one subtraction (−μ) and one multiplication (×1/σ, with g folded
                    in), plus one addition if it has a learned shift; mean-only BN: the
                    subtraction only. Per channel one square root (σ = sqrt(var + ε)) — constant
                    at inference, so a deployment computes it once, but it is listed.
                    bytes = 4 per stored float: μ, var (+ g, o)
    ReLU, sReLU     one comparison per element (max(0, x), max(−1, x))
    ELU             one comparison, and for negative inputs exp(x) − 1: counted on every element
                    as an upper bound (one exp, one addition)
    ×1/T            none: folded into the head conv's c (as `export` does)
    avg pool        per output (taps − 1) additions and one multiplication (÷ taps)
    zero channels   none (the downsampling shortcut's appended zeros are not added either)
    residual add    one addition per element of the shortcut's real channels
    GAP             per channel H·W − 1 additions and one multiplication (÷ H·W)

A baseline2 net pays two full passes over every activation map per BN; the srelu net replaces
each BN → ReLU by a single comparison and keeps only the input BN's three channels.
"""
from __future__ import annotations

import numpy as np

from . import nn
from .geometry import as_padding, as_pair, output_size, window_counts
from .kernels import im2col_ref
from .models import wrn
from .models.wrn import Block, temperature_for
from .ops.activations import clamp_forward
from .tensor import Tensor, no_grad

# --------------------------------------------------------------------------------- add/subtract path


def conv2d_addsub(x, bits, multiplier, stride=1, padding=0):
    """y[n, oh, ow, o] = c · (Σ x over the taps whose bit is 1 − Σ x over the taps whose bit is 0)

    The accumulation only adds and subtracts; c multiplies each output once.
    Shapes: x (N, H, W, C), bits (KH, KW, C, OC) of 0/1 -> y (N, OH, OW, OC), x's dtype.
    A plain NumPy reference, one output channel at a time: meant to be read, not to be fast.
    """
    x, bits = np.asarray(x), np.asarray(bits).astype(bool)
    (SH, SW), pads = as_pair(stride, "stride"), as_padding(padding)
    N, H, W, C = x.shape
    KH, KW, _, OC = bits.shape
    OH, OW = output_size(H, W, KH, KW, SH, SW, *pads)
    cols = np.empty((N * OH * OW, KH * KW * C), x.dtype)
    im2col_ref.im2col(x, cols, KH, KW, SH, SW, *pads)              # N*OH*OW, KH*KW*C
    plus = bits.reshape(KH * KW * C, OC)                           # KH*KW*C, OC
    acc = np.empty((N * OH * OW, OC), x.dtype)                     # N*OH*OW, OC
    for o in range(OC):
        acc[:, o] = cols[:, plus[:, o]].sum(axis=1) - cols[:, ~plus[:, o]].sum(axis=1)
    return (acc * x.dtype.type(multiplier)).reshape(N, OH, OW, OC)


def addsub_forward(model, x):
    """Logits of `model` (1-bit, eval mode) with every conv computed by `conv2d_addsub`.

    Every other layer is the model's own; only the convolutions change. x: (N, H, W, 3) pixels.
    """
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if any(conv.bits != 1 for conv in convs):
        raise ValueError("the add/subtract path needs a 1-bit model")

    def addsub(conv):
        bits = conv.weight.data >= 0  # the sign the model uses: sign(0) = +1

        def forward(inp, floor=None):  # floor: an activation folded into the conv (models.wrn.unit_conv)
            x = inp.data if floor is None else clamp_forward(inp.data, floor)[0]
            return Tensor(conv2d_addsub(x, bits, conv.multiplier, conv.stride, conv.padding))
        return forward

    was_training = model.training
    model.eval()
    for conv in convs:
        object.__setattr__(conv, "forward", addsub(conv))  # an instance attribute shadows the method
    try:
        with no_grad():
            return model(x).data
    finally:
        for conv in convs:
            object.__delattr__(conv, "forward")
        model.train(was_training)


# --------------------------------------------------------------------------------- operation counts

COLUMNS = ("mul", "add", "cmp", "sqrt", "exp", "weight_bytes", "bn_bytes")


def _conv_row(conv, in_shape, out_shape):
    H, W, C = in_shape
    OH, OW, OC = out_shape
    pads = as_padding(conv.padding)
    taps = window_counts(H, W, conv.k, conv.k, conv.stride, conv.stride, *pads)   # OH, OW
    n = conv.k * conv.k * C * OC
    row = dict(add=int(OC * (C * taps - 1).sum()))
    if conv.bits == 1:
        row.update(mul=OH * OW * OC, weight_bytes=-(-n // 8) + 4)
    else:
        row.update(mul=int(OC * (C * taps).sum()), weight_bytes=4 * n)
    return row


def _module_row(module, in_shape, out_shape):
    """Operation counts of one layer (the rules of the module docstring), or None if it has none."""
    elements = int(np.prod(out_shape))
    channels = out_shape[-1]
    if isinstance(module, nn.Conv2d):
        return _conv_row(module, in_shape, out_shape)
    if isinstance(module, nn.BatchNorm2d):
        stored = (1 if module.mean_only else 2) + (module.weight is not None) + (module.bias is not None)
        row = dict(add=elements * (1 + (module.bias is not None)), bn_bytes=4 * stored * channels)
        if not module.mean_only:
            row.update(mul=elements, sqrt=channels)
        return row
    if isinstance(module, (nn.ReLU, nn.SReLU)):
        return dict(cmp=elements)
    if isinstance(module, nn.ELU):
        return dict(cmp=elements, exp=elements, add=elements)
    if isinstance(module, nn.Scale):
        return dict()  # folded into the head conv's multiplier
    if isinstance(module, nn.AvgPool2d):
        H, W, _ = in_shape
        k, s = as_pair(module.size, "size"), as_pair(module.stride, "stride")
        taps = window_counts(H, W, *k, *s, *as_padding(module.padding))          # OH, OW
        return dict(add=int(channels * (taps - 1).sum()), mul=elements)
    if isinstance(module, nn.GlobalAvgPool):
        H, W, C = in_shape
        return dict(add=C * (H * W - 1), mul=C)
    if isinstance(module, Block):
        real = module.conv_a.c_in if module.shortcut is not None else channels
        return dict(add=int(np.prod(out_shape[:-1])) * real)
    return None


def op_counts(model, image_shape=(32, 32, 3)):
    """[(layer name, kind, output shape, {column: count})] for one image, in forward order, by the
    rules of the module docstring. Runs one blank image through the model to learn the shapes."""
    shapes, removers = {}, []
    for name, module in model.named_modules():
        def record(m, inp, out, name=name):
            shapes[name] = (tuple(inp.shape[1:]), tuple(out.shape[1:]))
        removers.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            model(np.zeros((1, *image_shape), model.dtype))
    finally:
        for remove in removers:
            remove()
        model.train(was_training)
    rows = []

    def walk(module, name):  # children first: a block's residual add comes after its layers
        for child_name, child in module._modules.items():
            walk(child, f"{name}.{child_name}" if name else child_name)
        counts = _module_row(module, *shapes[name]) if name in shapes else None
        if counts is not None:
            is_add = isinstance(module, Block)
            rows.append((name + ".add" if is_add else name, "residual add" if is_add else type(module).__name__,
                         shapes[name][1], {c: int(counts.get(c, 0)) for c in COLUMNS}))

    walk(model, "")
    for i, (name, kind, shape, counts) in enumerate(rows[:-1]):
        following, parent = rows[i + 1], name.rpartition(".")[0]
        # ×c folds into the next BN's ×1/σ if that BN is the conv's only reader: conv_a → unit_b.bn and
        # head.conv → head.final are (same parent module); the stem's output is also the residual stream
        if kind == "Conv2d" and following[1] == "BatchNorm2d" and following[3]["mul"] and parent \
                and following[0].startswith(parent + "."):
            counts["mul"] = 0
    return rows


def totals(rows) -> dict:
    return {c: sum(r[3][c] for r in rows) for c in COLUMNS}


def _fmt(n):
    return f"{n:,}" if n else "-"


def format_op_counts(rows, title="") -> str:
    """A plain-text table: one line per layer, then the totals."""
    header = f"{'layer':34s} {'kind':13s} {'output':>13s} " + " ".join(f"{c:>13s}" for c in COLUMNS)
    lines = [title, header, "-" * len(header)] if title else [header, "-" * len(header)]
    for name, kind, shape, counts in rows:
        lines.append(f"{name:34s} {kind:13s} {'×'.join(map(str, shape)):>13s} "
                     + " ".join(f"{_fmt(counts[c]):>13s}" for c in COLUMNS))
    total = totals(rows)
    lines.append("-" * len(header))
    lines.append(f"{'total':34s} {'':13s} {'':>13s} " + " ".join(f"{_fmt(total[c]):>13s}" for c in COLUMNS))
    return "\n".join(lines)


def comparison_report(depth, width, num_classes=10) -> str:
    """Totals for one image: baseline2 against srelu, same size, 1-bit."""
    lines = [f"WRN-{depth}-{width}, 1-bit, {num_classes} classes, one 32×32 image: baseline2 (BN) against srelu (no BN)",
             f"{'':10s} " + " ".join(f"{c:>15s}" for c in COLUMNS)]
    result = {}
    for variant in ("baseline2", "srelu"):
        model = wrn(depth, width, num_classes=num_classes, variant=variant, bits=1, rng=0,
                    temperature=temperature_for(variant, 1, num_classes))
        result[variant] = t = totals(op_counts(model))
        lines.append(f"{variant:10s} " + " ".join(f"{t[c]:>15,}" for c in COLUMNS))
    b, s = result["baseline2"], result["srelu"]
    lines.append(f"{'difference':10s} " + " ".join(f"{b[c] - s[c]:>15,}" for c in COLUMNS))
    conv_adds = sum(r[3]["add"] for r in op_counts(model) if r[1] == "Conv2d")
    lines.append(f"srelu saves {b['mul'] - s['mul']:,} multiplications ({100 * (b['mul'] - s['mul']) / b['mul']:.0f} % of "
                 f"baseline2's), {b['sqrt'] - s['sqrt']:,} square roots and {b['bn_bytes'] - s['bn_bytes']:,} bytes of BN "
                 f"statistics; of its {s['add']:,} additions, {100 * conv_adds / s['add']:.2f} % are inside the convs.")
    return "\n".join(lines)
