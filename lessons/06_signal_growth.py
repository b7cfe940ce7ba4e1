"""Lesson 06 — signal growth without batch norm: the residual stream at initialisation.

Question
    In a pre-activation WRN every block adds conv_b(unit(conv_a(unit(x)))) to its input x. With
    BN in each unit the branch sees a normalised input; without BN (sReLU units) it sees x as it
    is. How large is the signal at the head of WRN-20-4 at init, block by block, on real
    CIFAR-10 images? How large are the logits and the relative weight gradients ‖dW‖/‖W‖,
    compared with the BN baseline? And what temperature T would bring the logits back?

Run
    python lessons/06_signal_growth.py
    (without --archive the official CIFAR-10 archive is downloaded into ./datasets)

Expected output (a full run: WRN-20-4, 1-bit, one batch of 125 real training images, seed 0)
    1. std of the residual stream after the stem and each block (srelu: sReLU units, no BN)
       after             baseline2   final-bn      srelu   srelu ×
       stem                   1.44       1.44       1.44
       stage1.block0          1.73       2.10       2.10      1.46
       stage1.block1          1.95       3.22       3.22      1.53
       stage1.block2          2.14       4.26       4.26      1.32
       stage2.block0          1.62       4.81       4.81      1.13
       stage2.block1          1.87       7.24       7.24      1.51
       stage2.block2          2.14      10.96      10.96      1.51
       stage3.block0          1.58      13.28      13.28      1.21
       stage3.block1          1.84      17.95      17.95      1.35
       stage3.block2          2.07      24.95      24.95      1.39
       srelu: mean growth per block ×1.37 (√2 = 1.41); head input / stem output = 17.3 (√2^9 = 22.6)
    2. at the head
                               baseline2   final-bn  srelu T=1
       head unit output std        0.592         15         15
       logit std                   0.365      0.312       16.9
       loss                         2.41       2.38       31.4
       median |dW|/|W|            0.0357     0.0428       7.46
       srelu / baseline2: median |dW|/|W| ×209; logit std ×46 — a temperature T ≈ 46 gives the
       srelu net the baseline's logit scale
    3. per layer |dW|/|W| (srelu / baseline2): stem ×66, stage1 ×102–179, stage2 ×115–337,
       stage3 ×288–601, head.conv ×430
    4. seed-to-seed spread, WRN-20-1 srelu T=1 (the width of lessons 07-09), same batch
       seed 0: loss  20.21  logit std  14.85  stream std at the head  23.39  median |dW|/|W| 9.25
       seed 1: loss  31.62  logit std  25.13  stream std at the head  32.65  median |dW|/|W| 12.2
       seed 2: loss  19.24  logit std  16.83  stream std at the head  30.65  median |dW|/|W| 10.6
       seed 3: loss  36.81  logit std  22.78  stream std at the head  22.50  median |dW|/|W| 12.1
       seed 4: loss  47.02  logit std  26.43  stream std at the head  33.12  median |dW|/|W| 18.2
    (final-bn has srelu's body — same units, same weights — so their streams are identical; only
    the layer before the pool differs.) An independent PyTorch implementation measured, for
    WRN-20-1 srelu T=1 on these images, a first loss of 16.3 and a median |dW|/|W| of 5.3: a
    somewhat cooler initialisation than any of the five above, in the same regime.

Takeaway
    He-initialised weights (and 1-bit ±c, which has the same std) keep a branch's output
    variance about equal to its input's. Without BN the branch's input is the stream itself, so
    every block adds a copy-sized variance: the variance doubles and the std grows ×√2 per
    block (×1.13–1.21 in the two downsampling blocks, whose shortcut averages 3×3 neighbours and
    adds all-zero channels), reaching 25 at the head of WRN-20-4 (P2 §IV: ≈ 24). With BN
    each branch sees a normalised input and adds a variance of ~1, so the stream stays at 1.4–2.1.
    The BN-free logits have a std of ~17 (softmax saturated, loss 31 instead of ln 10 = 2.3) and
    the relative weight gradients are ~200× the BN net's — most in the last layers: at lr 0.1
    one step moves the weights by about their own size (lesson 07). Dividing the head's output by
    T ≈ the ratio of logit stds (46 here) restores the BN net's logit scale (lesson 08). The
    BN-free scale varies by tens of percent from one initialisation to the next.

Try next
    --width 1 --seeds 10       the seed-to-seed spread of a narrow net
    --depth 32                 more blocks: one more √2 per block
    --bits 32                  full-precision weights grow the same way
"""
import numpy as np

import tinybin.functional as F
from tinybin.models import wrn
from tinybin.probes import Probe

import lesson

NEEDS_DATA = True
FIGURES = ["signal_growth.png"]
RESULT_KEYS = ["stream_std", "logit_std", "median_grad_ratio", "growth_per_block", "temperature_match", "seeds"]
VARIANTS = ("baseline2", "final-bn", "srelu")


def measure(args, variant, x, y, seed, width):
    """One forward and backward at init: stream std per block, logits, ‖dW‖/‖W‖ per conv."""
    model = wrn(depth=args.depth, width=width, variant=variant, bits=args.bits,
                temperature=1.0 if variant == "srelu" else None, rng=seed)
    probe = Probe(model, sample=0)
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    probe.after_backward(model, logits, loss, y)
    rec = probe.records[0]
    probe.detach()
    return {"stream": {k: v["std"] for k, v in rec["stream"].items()},
            "head_unit_std": rec["units"]["head.unit"]["std"],
            "logit_std": rec["logit_std"], "loss": rec["loss"],
            "grad_ratio": {k: v["grad_ratio"] for k, v in rec["layers"].items()},
            "median_grad_ratio": float(np.median([v["grad_ratio"] for v in rec["layers"].values()]))}


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--depth", type=int, default=20, help="WRN depth (6n+2)")
    parser.add_argument("--width", type=int, default=4, help="WRN width k of the block-by-block part")
    parser.add_argument("--bits", type=int, default=1, choices=(1, 32), help="bits per weight")
    parser.add_argument("--batch", type=int, default=125, help="real images in the batch")
    parser.add_argument("--seeds", type=int, default=5, help="initialisations in the WRN-20-1 seed spread")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.seeds = min(args.batch, 32), min(args.seeds, 2)
    (x_train, y_train), _ = lesson.load_cifar10(args)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(x_train), args.batch, replace=False)
    x, y = x_train[pick].astype(np.float32), y_train[pick]

    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, at init (seed {args.seed}), one batch of {args.batch} "
          "real images, training mode (BN uses the batch's statistics)")
    res = {v: measure(args, v, x, y, args.seed, args.width) for v in VARIANTS}
    names = list(res["srelu"]["stream"])
    print("\n1. std of the residual stream after the stem and each block (srelu: sReLU units, no BN)")
    print(f"   {'after':16s} {'baseline2':>10s} {'final-bn':>10s} {'srelu':>10s} {'srelu ×':>9s}")
    growth = {}
    prev = None
    for name in names:
        s = res["srelu"]["stream"][name]
        growth[name] = s / prev if prev else None
        ratio = f"{s / prev:9.2f}" if prev else f"{'':9s}"
        print(f"   {name:16s} {res['baseline2']['stream'][name]:10.2f} {res['final-bn']['stream'][name]:10.2f} "
              f"{s:10.2f} {ratio}")
        prev = s
    blocks = [g for g in growth.values() if g]
    geo = float(np.exp(np.mean(np.log(blocks))))
    print(f"   srelu: mean growth per block ×{geo:.2f} (√2 = 1.41); head input / stem output = "
          f"{res['srelu']['stream'][names[-1]] / res['srelu']['stream'][names[0]]:.1f} (√2^{len(blocks)} = "
          f"{np.sqrt(2) ** len(blocks):.1f})")

    print("\n2. at the head")
    print(f"   {'':22s} {'baseline2':>10s} {'final-bn':>10s} {'srelu T=1':>10s}")
    print(f"   {'head unit output std':22s} " + " ".join(f"{res[v]['head_unit_std']:10.3g}" for v in VARIANTS))
    print(f"   {'logit std':22s} " + " ".join(f"{res[v]['logit_std']:10.3g}" for v in VARIANTS))
    print(f"   {'loss':22s} " + " ".join(f"{res[v]['loss']:10.3g}" for v in VARIANTS))
    print(f"   {'median |dW|/|W|':22s} " + " ".join(f"{res[v]['median_grad_ratio']:10.3g}" for v in VARIANTS))
    grad_x = res["srelu"]["median_grad_ratio"] / res["baseline2"]["median_grad_ratio"]
    t_match = res["srelu"]["logit_std"] / res["baseline2"]["logit_std"]
    print(f"   srelu / baseline2: median |dW|/|W| ×{grad_x:.0f}; logit std ×{t_match:.0f} — a temperature "
          f"T ≈ {t_match:.0f} gives the srelu net the baseline's logit scale")

    print("\n3. per layer |dW|/|W| (srelu / baseline2)")
    per_layer = {}
    for name in res["srelu"]["grad_ratio"]:
        per_layer[name] = res["srelu"]["grad_ratio"][name] / res["baseline2"]["grad_ratio"][name]
    items = list(per_layer.items())
    for i in range(0, len(items), 4):
        print("   " + "   ".join(f"{n}: ×{r:.0f}" for n, r in items[i:i + 4]))

    print(f"\n4. seed-to-seed spread, WRN-{args.depth}-1 srelu T=1 (the width of lessons 07-09), same batch")
    seeds = {}
    for s in range(args.seeds):
        m = measure(args, "srelu", x, y, s, 1)
        seeds[s] = {"loss": m["loss"], "logit_std": m["logit_std"], "head_stream_std": m["stream"][names[-1]],
                    "median_grad_ratio": m["median_grad_ratio"]}
        print(f"   seed {s}: loss {m['loss']:6.2f}  logit std {m['logit_std']:6.2f}  stream std at the head "
              f"{m['stream'][names[-1]]:6.2f}  median |dW|/|W| {m['median_grad_ratio']:.3g}")

    plt = lesson.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    pos = np.arange(len(names))
    for v in VARIANTS:
        axes[0].semilogy(pos, [res[v]["stream"][n] for n in names], "o-", ms=4, label=v)
    axes[0].semilogy(pos, res["srelu"]["stream"][names[0]] * np.sqrt(2) ** pos, "k:", lw=1, label="×√2 per block")
    axes[0].set_xticks(pos, [n.replace("stage", "s").replace(".block", ".b") for n in names], rotation=45, fontsize=7)
    axes[0].set(ylabel="std of the residual stream", title=f"WRN-{args.depth}-{args.width} at init, real images")
    layers = list(res["srelu"]["grad_ratio"])
    for v in VARIANTS:
        axes[1].semilogy(range(len(layers)), [res[v]["grad_ratio"][n] for n in layers], "o-", ms=3, label=v)
    axes[1].set(xlabel="conv layer (stem … head)", ylabel="|dW| / |W|", title="relative weight gradient at init")
    for a in axes:
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=8)
    lesson.save_figure(fig, args, FIGURES[0])
    lesson.finish(args, {
        "stream_std": {v: res[v]["stream"] for v in VARIANTS},
        "logit_std": {v: res[v]["logit_std"] for v in VARIANTS},
        "loss": {v: res[v]["loss"] for v in VARIANTS},
        "median_grad_ratio": {v: res[v]["median_grad_ratio"] for v in VARIANTS},
        "grad_ratio_srelu_over_baseline2": per_layer,
        "growth_per_block": {"per_block": growth, "geometric_mean": geo},
        "temperature_match": t_match, "seeds": seeds})


if __name__ == "__main__":
    main()
