"""Lesson 08 — the final scale layer: one constant 1/T before the global average pool.

Question
    The paper replaces the final batch norm of a BN-free WRN by a constant multiply, z/T, on the
    head conv's output. Which T lets the net train at lr 0.1 — T ∈ {1, 3, 10, 30, 100} on the
    same images with the same seed — and why do the others fail? Is "scale before the pool" really
    a softmax temperature? And is a net with T = 30 the same as a net with T = 1 trained at
    lr 0.1/30?

Run
    python lessons/08_scale_layer.py
    (without --archive the official CIFAR-10 archive is downloaded into ./datasets)

Expected output (a full run: WRN-20-1, 1-bit, the 4000 training images of the subset, batch 125,
cosine schedule laid out for 30 epochs, seed 0, 100 steps per run)
    1. one batch, same weights: logits of the T=30 net vs (logits of the T=1 net)/30: max relative
       difference 2.9e-07; cross-entropy 2.373837 vs 2.373837 with temperature 30 on the T=1 logits
       T=1   at init: logit std  15.27, mean top probability 0.917, 87 % of the batch predicted as one class
       T=30  at init: logit std   0.51, mean top probability 0.182, 87 % of the batch predicted as one class
    2. T at lr 0.1, the same initial weights and batches
       run                  loss@0  max loss acc last logit std dL/dz std  |dW|/|W|   flips@0  verdict
       srelu T=1              21.9  1.04e+17    10.2%      15.7   0.00639      9.71   16.172%  exploded, then dead
       srelu T=3              7.63  4.97e+14    10.1%      5.24   0.00194      2.94    6.920%  exploded, then dead
       srelu T=10             3.25        71    10.4%      1.57  0.000502     0.562    1.428%  dead
       srelu T=30             2.45      2.77    17.8%     0.524  0.000158    0.0937    0.244%  learning
       srelu T=100            2.32      2.67    11.5%     0.157   4.7e-05    0.0147    0.038%  at chance
    3. T = 1 at lr 0.1/T against the T net at lr 0.1
       T=30, lr 0.1           2.45      2.77    17.8%     0.524  0.000158    0.0937    0.244%  learning
       T=1, lr 0.1/30         21.9      35.2    15.4%      15.7   0.00639      9.71    0.915%  learning
    (acc last: training accuracy of the last 30 steps, chance 10 %; |dW|/|W|: median over the 20
    conv layers at step 0; flips@0: weight signs the first update flipped.) For reference, the
    BN net (baseline2, --baseline) has |dW|/|W| 0.036 at step 0 and 39 % after 150 steps
    (lesson 07). An independent PyTorch implementation, 150–200 steps: loss@0 / max loss /
    acc / |dW|/|W| = T=1 16.3 / 5.6e17 / 10 % / 5.3; T=3 5.8 / 3.8e10 / 10 % / 1.45; T=10
    2.84 / 3.04 / 13 % / 0.26; T=30 2.37 / 2.37 / 19 % / 0.045; T=100 2.31 / 2.31 / 22 % / 0.0086.
    Our initialisation (seed 0) is hotter — logits and gradients 1.3–2× larger, see lesson 06's
    seed spread — so T=10 here dies where theirs limped; T=100 rose to 16 % around step 20 and
    fell back to chance within these 100 steps.

Takeaway
    Without normalisation the head conv's output z is large (its std grows ×√2 per block,
    lesson 06), so with T = 1 the logits have a std of ~16: the softmax is saturated (top
    probability 0.92) and the gradient reaching the weights is ~10× the weights' own norm.
    ×1/T divides the logits by T — GAP is linear, so it *is* a softmax temperature, the same
    numbers to float32 precision; the winning class does not change, only how sure the softmax
    is — and divides every gradient below it by T (dL/dz std ×1/T exactly, and |dW|/|W| by
    more, because a softer softmax also gives gradients that cancel across images). T = 1 and 3
    explode and die, T = 10 dies, T = 30 trains with a first loss near ln 10 = 2.3 and relative
    gradients within 3× of the BN net's; T = 100 is cold — gradients below the BN net's — and
    learns slowest. Dividing the learning rate by T instead is not the same thing: the step
    sizes shrink alike, but the softmax stays saturated (loss 22 at step 0, 35 at its worst),
    the first update flips 4× more signs, and the net learns less (15 % vs 18 %). The paper's
    T ≈ 30–100 (P2 §IV) holds; in 100 steps of this narrow net only T = 30 is clearly ahead.

Try next
    --temperatures 20 30 40 60     where between 10 and 100 does it start to train?
    --steps 300                    longer: which T ends best?
    --bits 32                      the authors use T = 80 for 32-bit weights
    --lr-over-t 10 30 100          more "lr/T instead of T" runs
    --baseline                     add the BN net (baseline2) at lr 0.1 for comparison
"""
import numpy as np

import tinybin.functional as F
from tinybin.models import wrn
from tinybin.probes import Probe, diagnose, short_run

import lesson

NEEDS_DATA = True
FIGURES = ["temperature_sweep.png", "t_vs_lr.png"]
RESULT_KEYS = ["identity", "sweep", "lr_over_t", "steps"]


def build(args, variant="srelu", temperature=1.0):
    """A fresh WRN; the same seed gives the same initial latent weights whatever T is."""
    return wrn(depth=args.depth, width=args.width, variant=variant, bits=args.bits,
               temperature=temperature if variant == "srelu" else None, rng=args.seed)


def run(args, x, y, lr, variant="srelu", temperature=1.0):
    model = build(args, variant, temperature)
    probe = Probe(model, sample=0)
    hist = short_run(model, x, y, args.steps, lr, batch_size=args.batch, seed=args.seed, probe=probe)
    probe.close()
    d = diagnose(hist)
    first = probe.records[0]
    d.update(lr=lr, temperature=temperature if variant == "srelu" else None, variant=variant,
             logit_std0=first["logit_std"], dz_std0=first["grad"]["z"]["std"],
             median_grad_ratio0=probe.median_grad_ratio(0), flip0=first["flip_ratio"],
             loss=hist["loss"], acc=hist["acc"], seconds_per_step=hist["seconds_per_step"])
    return d


def row(label, d):
    return (f"{label:24s} {d['loss0']:7.3g} {d['max_loss']:9.3g} {100 * d['acc_last']:7.1f}% {d['logit_std0']:9.3g} "
            f"{d['dz_std0']:9.3g} {d['median_grad_ratio0']:10.3g} {100 * d['flip0']:8.3f}%  {d['verdict']}")


HEADER = (f"{'run':24s} {'loss@0':>7s} {'max loss':>9s} {'acc last':>8s} {'logit std':>9s} {'dL/dz std':>9s} "
          f"{'|dW|/|W|':>10s} {'flips@0':>9s}  verdict")


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1, 3, 10, 30, 100], help="values of T")
    parser.add_argument("--lr-over-t", type=float, nargs="*", default=[30],
                        help="for each T here, also train T = 1 at lr 0.1/T")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine)")
    parser.add_argument("--steps", type=int, default=100, help="SGD steps per run")
    lesson.model_flags(parser)
    parser.add_argument("--baseline", action="store_true", help="also train the BN baseline (baseline2)")
    args = parser.parse_args()
    if args.quick:
        args.steps = min(args.steps, 12)
        args.temperatures = [1, 10, 100]
        args.lr_over_t = [100]
    (x_train, y_train), _ = lesson.load_cifar10(args)
    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch {args.batch}, "
          f"{args.steps} steps per run at lr {args.lr:g}, seed {args.seed}")

    # ----- 1. scale before the pool = softmax temperature --------------------------------------
    xb, yb = x_train[:args.batch].astype(np.float32), y_train[:args.batch]
    T = 30.0
    plain, scaled = build(args, "srelu", 1.0), build(args, "srelu", T)   # identical weights
    logits1, logitsT = plain(xb), scaled(xb)
    diff = float(np.abs(logitsT.data - logits1.data / T).max() / np.abs(logitsT.data).max())
    ce_T = F.cross_entropy(logitsT, yb).item()
    ce_div = F.cross_entropy(logits1 * (1.0 / T), yb).item()
    print(f"\n1. one batch, same weights: logits of the T={T:g} net vs (logits of the T=1 net)/{T:g}: "
          f"max relative difference {diff:.1e}")
    print(f"   cross-entropy {ce_T:.6f} vs {ce_div:.6f} with temperature {T:g} on the T=1 logits — "
          "GAP is linear, so z/T before it is logits/T after it")
    identity = {"T": T, "max_rel_diff": diff, "ce_scaled_layer": ce_T, "ce_temperature": ce_div}
    # What a saturated softmax looks like: most images pushed into the same class with certainty.
    for name, logits in (("T=1", logits1.data), (f"T={T:g}", logitsT.data)):
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        share = np.bincount(p.argmax(1), minlength=p.shape[1]).max() / len(p)
        print(f"   {name:5s} at init: logit std {logits.std():6.2f}, mean top probability {p.max(1).mean():.3f}, "
              f"{100 * share:.0f} % of the batch predicted as one class")
        identity[f"{name} top_prob"], identity[f"{name} one_class_share"] = float(p.max(1).mean()), float(share)

    # ----- 2. the sweep over T -----------------------------------------------------------------
    print("\n2. T at lr 0.1, the same initial weights and batches")
    sweep = {}
    for T in args.temperatures:
        sweep[f"T={T:g}"] = run(args, x_train, y_train, args.lr, "srelu", T)
        print("   " + row(f"srelu T={T:g}", sweep[f"T={T:g}"]))
    if args.baseline:
        sweep["baseline2"] = run(args, x_train, y_train, args.lr, "baseline2")
        print("   " + row("baseline2 (BN)", sweep["baseline2"]))

    # ----- 3. T is not lr/T --------------------------------------------------------------------
    print("\n3. T = 1 at lr 0.1/T against the T net at lr 0.1")
    lr_over_t = {}
    for T in args.lr_over_t:
        lr_over_t[f"T=1, lr {args.lr:g}/{T:g}"] = run(args, x_train, y_train, args.lr / T, "srelu", 1.0)
        if f"T={T:g}" not in sweep:
            sweep[f"T={T:g}"] = run(args, x_train, y_train, args.lr, "srelu", T)
    for T in args.lr_over_t:
        print("   " + row(f"T={T:g}, lr {args.lr:g}", sweep[f"T={T:g}"]))
        print("   " + row(f"T=1, lr {args.lr:g}/{T:g}", lr_over_t[f"T=1, lr {args.lr:g}/{T:g}"]))

    print("\n" + HEADER.replace("run", "columns:", 1))
    print("   loss@0: loss at step 0; max loss over the run; acc last: training accuracy of the last "
          f"{min(30, args.steps)} steps (chance 10 %); logit std and dL/dz std (summed-loss convention) at step 0; "
          "|dW|/|W|: median over the 20 conv layers at step 0; flips@0: weight signs the first update flipped")

    fig = lesson.loss_accuracy_figure(
        sweep, f"loss at lr {args.lr:g}", "training accuracy",
        f"srelu WRN-{args.depth}-{args.width} ({args.bits}-bit) with ×1/T before the pool, real CIFAR-10")
    lesson.save_figure(fig, args, FIGURES[0])

    fig, axes = lesson.pyplot().subplots(1, len(args.lr_over_t), figsize=(5.5 * len(args.lr_over_t), 3.6), squeeze=False)
    for ax, T in zip(axes[0], args.lr_over_t):
        for label, d in ((f"T={T:g}, lr {args.lr:g}", sweep[f"T={T:g}"]),
                         (f"T=1, lr {args.lr:g}/{T:g}", lr_over_t[f"T=1, lr {args.lr:g}/{T:g}"])):
            ax.semilogy(d["loss"], lw=1, label=label)
        ax.set(xlabel="step", ylabel="training loss (log)", title=f"temperature {T:g} vs learning rate / {T:g}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    lesson.save_figure(fig, args, FIGURES[1])
    lesson.finish(args, {"identity": identity, "sweep": sweep, "lr_over_t": lr_over_t, "steps": args.steps})


if __name__ == "__main__":
    main()
