"""Lesson 06 — signal growth without batch norm: the residual stream at initialisation.

Question
    In a pre-activation WRN every block adds conv_b(unit(conv_a(unit(x)))) to its input x. With
    BN in each unit the branch sees a normalised input; without BN (sReLU units) it sees x as it
    is. How large is the signal at the head of WRN-20-4 at init, block by block, on real
    CIFAR-10 images? How large are the logits and the relative weight gradients ‖dW‖/‖W‖,
    compared with the BN baseline? And what temperature T would bring the logits back?

    P2 says: "Our experiments are based on wide residual networks [31] (see Figure 2) that use
    the post-activation architecture [32]." (§III.A). tinybin's blocks are pre-activation (unit
    → conv, nothing after the add), like the authors' released code and models, because their
    weights reach the authors' accuracy in that ordering (lesson 11); [32], He et al.'s
    "Identity mappings" paper, is where pre-activation blocks come from. The growth measured
    here is that of pre-activation blocks; P2's words describe another ordering, not measured here.
    In all three nets the input BN uses batch statistics and learned g, o (the authors' code);
    P2 counts it as pre-processing only "provided that the shift and scale factors are not
    learned" (§III.A). At init (g = 1, o = 0) it standardises each colour with the batch's statistics.

Run
    python lessons/06_signal_growth.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run: WRN-20-4, 1-bit, one batch of 125 real training images, seed 0,
single-threaded: TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1)
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
       median |dW|/|W|            0.0358     0.0428       7.46
       srelu / baseline2: median |dW|/|W| ×209; logit std ×46 — a temperature T ≈ 46 gives the
       srelu net the baseline's logit scale
    3. per layer |dW|/|W| (srelu / baseline2): stem ×66, stage1 ×102–179, stage2 ×115–337,
       stage3 ×288–601, head.conv ×430
    4. seed-to-seed spread at init, WRN-20-1 srelu T=1 (the width of lessons 07-09), 1-bit, the first 125 training
       images unaugmented, 60 seeds
       first loss               median    21.9  quartiles 17–31.9  5–95 % 9.66–59  range 6.75–74.9  (seed 0: 19.5)
       logit std                median    15.4  quartiles 11.5–20.4  5–95 % 7.55–33.4  range 4.21–44.7  (seed 0: 15.3)
       stream std at the head   median    22.3  quartiles 17.1–28  5–95 % 12.6–33.8  range 8.86–43.4  (seed 0: 24.2)
       median |dW|/|W|          median    8.26  quartiles 5.75–11.3  5–95 % 2.57–19.2  range 1.88–26.2  (seed 0: 8.55)
       a first loss of 16.3 lies at percentile 23 of these seeds
    (final-bn has srelu's body — same units, same weights — so their streams are identical; only
    the layer before the pool differs.) An independent PyTorch implementation measured, for
    WRN-20-1 srelu T=1 on the same 125 images, a first loss of 16.3 and a median |dW|/|W| of 5.3
    for one seed — inside our spread (percentile 23) — and, over 60 seeds, a median first loss of
    23.1 with a spread of 7–96: the same distribution as ours (median 21.9). The two
    initialisations do not differ; one seed says little.

Takeaway
    He-initialised weights (and 1-bit ±c, which has the same std) keep a branch's output
    variance about equal to its input's. Without BN the branch's input is the stream itself, so
    every block adds a copy-sized variance: the variance doubles and the std grows ×√2 per
    block (×1.13–1.21 in the two downsampling blocks, whose shortcut averages 3×3 neighbours and
    adds all-zero channels), reaching 25 at the head of WRN-20-4. With BN
    each branch sees a normalised input and adds a variance of ~1, so the stream stays at 1.4–2.1.
    The BN-free logits have a std of ~17 (softmax saturated, loss 31 instead of ln 10 = 2.3) and
    the relative weight gradients are ~200× the BN net's — most in the last layers: at lr 0.1
    one step moves the weights by about their own size (lesson 07). Dividing the head's output by
    T ≈ the ratio of logit stds (46 here) restores the BN net's logit scale (lesson 08). P2 says
    that T "between approximately 30 and 100" lets training proceed like the baselines (§III.D):
    46 lies in that range (P2 does not say how it found the range; this ratio is our reading). The
    BN-free scale varies a lot from one initialisation to the next: over 60 seeds of WRN-20-1 the
    first loss runs from 6.8 to 75 (quartiles 17–32) and the logit std from 4.2 to 45, so a
    single seed, ours or a reference's, is not a measurement of "the" initial scale.

Try next
    --seeds 200                a finer seed-to-seed distribution
    --depth 32                 more blocks: one more √2 per block
    --bits 32                  full-precision weights grow the same way
"""
import numpy as np

import tinybin.functional as F
from tinybin.models import wrn
from tinybin.probes import Probe

import lesson

NEEDS_DATA = True
FIGURES = ["signal_growth.png", "seed_spread.png"]
RESULT_KEYS = ["stream_std", "logit_std", "median_grad_ratio", "growth_per_block", "temperature_match", "seeds", "seed_spread"]
VARIANTS = ("baseline2", "final-bn", "srelu")
REFERENCE_FIRST_LOSS = (16.3,)   # an independent PyTorch implementation, one seed, the same 125 images


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
    parser.add_argument("--seeds", type=int, default=60, help="initialisations in the WRN-20-1 seed spread")
    parser.add_argument("--spread-batch", type=int, default=125, help="first N training images for the seed spread")
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

    xs, ys = x_train[:args.spread_batch].astype(np.float32), y_train[:args.spread_batch]
    print(f"\n4. seed-to-seed spread at init, WRN-{args.depth}-1 srelu T=1 (the width of lessons 07-09), "
          f"{args.bits}-bit, the first {len(ys)} training images unaugmented, {args.seeds} seeds")
    seeds = {}
    for s in range(args.seeds):
        m = measure(args, "srelu", xs, ys, s, 1)
        seeds[s] = {"loss": m["loss"], "logit_std": m["logit_std"], "head_stream_std": m["stream"][names[-1]],
                    "median_grad_ratio": m["median_grad_ratio"]}
    spread = {}
    for key, label in (("loss", "first loss"), ("logit_std", "logit std"), ("head_stream_std", "stream std at the head"),
                       ("median_grad_ratio", "median |dW|/|W|")):
        v = np.array([d[key] for d in seeds.values()])
        q = np.percentile(v, [5, 25, 50, 75, 95])
        spread[key] = {"min": float(v.min()), "p5": q[0], "p25": q[1], "median": q[2], "p75": q[3], "p95": q[4],
                       "max": float(v.max()), "seed0": float(v[0]), "seed0_rank": float(np.mean(v < v[0]))}
        print(f"   {label:24s} median {q[2]:7.3g}  quartiles {q[1]:.3g}–{q[3]:.3g}  5–95 % {q[0]:.3g}–{q[4]:.3g}  "
              f"range {v.min():.3g}–{v.max():.3g}  (seed 0: {v[0]:.3g})")
    losses = np.array([d["loss"] for d in seeds.values()])
    for ref in REFERENCE_FIRST_LOSS:
        print(f"   a first loss of {ref:g} lies at percentile {100 * np.mean(losses < ref):.0f} of these seeds")

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

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].hist(losses, bins=np.geomspace(max(losses.min(), 1) * 0.9, losses.max() * 1.1, 25), color="tab:gray")
    axes[0].set_xscale("log")
    for ref in REFERENCE_FIRST_LOSS:
        axes[0].axvline(ref, color="tab:red", ls=":", label=f"reference, one seed: {ref:g}")
    axes[0].axvline(np.median(losses), color="k", label=f"median: {np.median(losses):.3g}")
    axes[0].set(xlabel="first loss (log)", ylabel="seeds", title=f"WRN-{args.depth}-1 srelu T=1 at init, {len(losses)} seeds")
    grad = np.array([d["median_grad_ratio"] for d in seeds.values()])
    axes[1].scatter(losses, grad, s=10)
    axes[1].set(xscale="log", yscale="log", xlabel="first loss", ylabel="median |dW|/|W|", title="per seed")
    for a in axes:
        a.grid(alpha=0.3, which="both")
        for axis in (a.xaxis, a.yaxis):
            axis.set_minor_formatter(plt.NullFormatter())   # log axes: label the decades only
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    lesson.save_figure(fig, args, FIGURES[1])
    lesson.finish(args, {
        "stream_std": {v: res[v]["stream"] for v in VARIANTS},
        "logit_std": {v: res[v]["logit_std"] for v in VARIANTS},
        "loss": {v: res[v]["loss"] for v in VARIANTS},
        "median_grad_ratio": {v: res[v]["median_grad_ratio"] for v in VARIANTS},
        "grad_ratio_srelu_over_baseline2": per_layer,
        "growth_per_block": {"per_block": growth, "geometric_mean": geo},
        "temperature_match": t_match, "seeds": seeds, "seed_spread": spread})


if __name__ == "__main__":
    main()
