"""Lesson 07 — without batch norm and without the scale layer, lr 0.1 breaks training.

Question
    Take the BN-free WRN (sReLU units, no final BN) and leave out the paper's ×1/T layer (T = 1).
    At the learning rate the BN nets use, 0.1, what happens in the first 150 steps on real
    CIFAR-10 images? And at 0.01 and 0.001? What does "diverged" look like when float32 never
    produces a NaN?

Run
    python lessons/07_no_bn_high_lr.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run: WRN-20-1, 1-bit, the 4000 training images of the subset, batch 125,
cosine schedule laid out for 30 epochs, seed 0, 150 steps per run, single-threaded:
TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1)
    srelu T=1 lr 0.1: loss per step
       0: 21.9  1: 2.38e+06  2: 1.41e+13  3: 1.03e+18  4: 12.7  5: 13.8  10: 13.5  20: 13.8
       50: 14  100: 13.4  149: 13.9
       at step 0: logit std 15.72, median |dW|/|W| 9.71, the first update flipped 16.17 % of the weight signs
       at the last step: 71.4 % of unit outputs at the floor (-1); same logits for every image: True
    srelu T=1 lr 0.01: loss per step
       0: 21.9  1: 156  2: 12.4  3: 5.59  4: 10.5  5: 45.7  10: 7.82  20: 4.23  50: 2.36  100: 2.33  149: 2.31
       at step 0: logit std 15.72, median |dW|/|W| 9.71, the first update flipped 2.64 % of the weight signs
       at the last step: 69.5 % of unit outputs at the floor (-1); same logits for every image: True
    srelu T=1 lr 0.001: loss per step
       0: 21.9  1: 27.9  2: 7.58  3: 6.12  4: 5.24  5: 3.94  10: 2.76  20: 2.47  50: 2.12  100: 1.98  149: 2.01
       at step 0: logit std 15.72, median |dW|/|W| 9.71, the first update flipped 0.29 % of the weight signs
       at the last step: 43.5 % of unit outputs at the floor (-1); same logits for every image: False
    baseline2 lr 0.1: loss per step
       0: 2.31  1: 2.26  2: 2.22  3: 2.25  4: 2.17  5: 2.17  10: 2.07  20: 2  50: 1.89  100: 1.65  149: 1.64
       at step 0: logit std 0.28, median |dW|/|W| 0.0362, the first update flipped 0.09 % of the weight signs
       at the last step: 50.0 % of unit outputs at the floor (0); same logits for every image: False

    run                      loss@0  max loss acc last  exploded dead from  verdict
    srelu T=1 lr 0.1           21.9  1.03e+18    10.7%         1         4  exploded, then dead
    srelu T=1 lr 0.01          21.9       156    10.4%      None        14  dead
    srelu T=1 lr 0.001         21.9      27.9    22.6%      None      None  learning
    baseline2 lr 0.1           2.31      2.31    39.4%      None      None  learning

    An independent PyTorch implementation of the same experiment saw: max loss 5.6e17, 6.7e7 and
    24.1 for lr 0.1, 0.01 and 0.001, training accuracy 10 %, 10 % and 24 %; baseline2 42 %.

Takeaway
    Without any normalisation the signal grows ×√2 per residual block (lesson 06): the logits
    start at a std of ~16, the softmax is saturated, the loss starts at 22 instead of ln 10 and
    the relative weight gradient ‖dW‖/‖W‖ is ~10, 270× the BN net's. One step at lr 0.1 moves the
    latent weights by about their own norm and flips 16 % of the 1-bit signs; the signal explodes
    (loss 1.0e18 by step 3, never a NaN in float32), and from step 4 so many sReLUs sit at their
    floor −1 that every image gets the same logits. sReLU passes no gradient below −1, so the net
    is dead for good — while its loss settles at 14. A NaN check alone would see nothing wrong.
    Lowering the learning rate to 0.01 does not save it: the first steps still jump (loss 156
    after one step), and from step 14 every image gets the same logits again, with 70 % of the
    units at the floor — a dead net whose loss, 2.31, sits at ln 10 and looks harmless. How it
    dies at lr 0.01 depends on the float32 rounding of the run: an earlier release of this
    code, which rounded a few sums differently, saw it explode at step 32 (max loss 2.8e9) and
    die at step 50, and the PyTorch implementation saw 6.7e7; the end is the same. lr 0.001
    survives and learns, slower than the BN net at lr 0.1 (23 % vs 39 %). Lesson 08 shows the
    fix.

Try next
    --lrs 0.1 0.03 0.01 0.003 0.001   a finer sweep
    --steps 300                       look longer: does lr 0.001 catch up with the BN net?
    --bits 32                         full-precision weights: the same story?
    --width 2                         a wider net
"""
import numpy as np

from tinybin.models import wrn
from tinybin.probes import Probe, diagnose, short_run

import lesson

NEEDS_DATA = True
FIGURES = ["lr_sweep.png"]
RESULT_KEYS = ["runs", "steps", "init"]


def run(args, x, y, variant, lr, steps):
    """Train a fresh WRN (same seed: same initial weights and batches) and probe it."""
    temperature = 1.0 if variant == "srelu" else None
    model = wrn(depth=args.depth, width=args.width, variant=variant, bits=args.bits, temperature=temperature,
                rng=args.seed)
    probe = Probe(model, sample=0)           # summary numbers only, no gradient samples
    hist = short_run(model, x, y, steps, lr, batch_size=args.batch, seed=args.seed, probe=probe)
    probe.close()
    return hist, probe


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.01, 0.001], help="learning rates of the sweep")
    parser.add_argument("--steps", type=int, default=150, help="SGD steps per run")
    lesson.model_flags(parser)
    parser.add_argument("--no-baseline", action="store_true", help="skip the BN baseline run at lr 0.1")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.lrs = min(args.steps, 14), [max(args.lrs), min(args.lrs)]
    (x_train, y_train), _ = lesson.load_cifar10(args)

    runs = {}
    plan = [("srelu", lr) for lr in args.lrs] + ([] if args.no_baseline else [("baseline2", 0.1)])
    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch {args.batch}, "
          f"{args.steps} steps per run, seed {args.seed}")
    for variant, lr in plan:
        label = f"{'srelu T=1' if variant == 'srelu' else variant} lr {lr:g}"
        hist, probe = run(args, x_train, y_train, variant, lr, args.steps)
        d = diagnose(hist)
        first, last = probe.records[0], probe.records[-1]
        d.update(variant=variant, lr=lr, logit_std0=first["logit_std"],
                 median_grad_ratio0=probe.median_grad_ratio(0), flip0=first["flip_ratio"],
                 floor_last=float(np.mean([u["floor"] for u in last["units"].values()])),
                 seconds_per_step=hist["seconds_per_step"], loss=hist["loss"], acc=hist["acc"])
        runs[label] = d
        print(f"\n{label}: loss per step")
        shown = [s for s in (0, 1, 2, 3, 4, 5, 10, 20, 50, 100) if s < args.steps] + [args.steps - 1]
        print("   " + "  ".join(f"{s}: {hist['loss'][s]:.3g}" for s in dict.fromkeys(shown)))
        print(f"   at step 0: logit std {d['logit_std0']:.2f}, median |dW|/|W| {d['median_grad_ratio0']:.3g}, "
              f"the first update flipped {100 * d['flip0']:.2f} % of the weight signs")
        print(f"   at the last step: {100 * d['floor_last']:.1f} % of unit outputs at the floor "
              f"({'-1' if variant == 'srelu' else '0'}); same logits for every image: {hist['same_output'][-1]}")

    print(f"\n{'run':22s} {'loss@0':>8s} {'max loss':>9s} {'acc last':>8s} {'exploded':>9s} {'dead from':>9s}  verdict")
    for label, d in runs.items():
        print(f"{label:22s} {d['loss0']:8.3g} {d['max_loss']:9.3g} {100 * d['acc_last']:7.1f}% "
              f"{str(d['exploded_at']):>9s} {str(d['dead_from']):>9s}  {d['verdict']}")
    print(f"(acc last: mean training accuracy of the last {min(30, args.steps)} steps; chance is 10 %. "
          "exploded: first step with loss > 100 x max(first loss, ln 10); dead from: the step after "
          "which every image gets the same logits)")

    fig = lesson.loss_accuracy_figure(
        runs, "loss: float32 reaches 1e17 without NaN", "training accuracy (chance = 10 %)",
        f"BN-free WRN-{args.depth}-{args.width} ({args.bits}-bit) without the scale layer, real CIFAR-10")
    lesson.save_figure(fig, args, FIGURES[0])
    init = {label: {k: d[k] for k in ("loss0", "logit_std0", "median_grad_ratio0", "flip0")} for label, d in runs.items()}
    lesson.finish(args, {"runs": runs, "steps": args.steps, "init": init})


if __name__ == "__main__":
    main()
