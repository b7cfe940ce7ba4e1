"""Lesson 09 — gradient distributions early in training: where is the "longer tail"?

Question
    The paper (§III.D) says that early in training, without a final BN, the distribution of
    gradients at the network's output has a longer tail. Measure it: train baseline2, final-bn
    and srelu T=40 at lr 0.1, and srelu T=1 at a lower learning rate (at 0.1 it dies, lesson 07),
    on the same images with the same seed, and record every step's gradient at four points —
    dL/dlogits, dL/dz at the head conv's output z, dL/dh at the head conv's input h, dL/dx at
    the head unit's input x (the stream, before the head's BN→ReLU or sReLU), and the head conv's
    weight gradient. Which of them carry a heavier tail without the final BN?

Run
    python lessons/09_gradient_distributions.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run: WRN-20-1, 1-bit, the 4000 training images of the subset, batch 125,
cosine schedule laid out for 30 epochs, seed 0, 200 steps per run; condensed: the script prints
parts 1 and 4 as one table per gradient point and one row per layer)
    baseline2            loss 2.31 -> 1.63 (max 2.31), train acc of the last 30 steps 42.0 %, logit std 0.282 -> 0.827
    final-bn             loss 2.36 -> 1.83 (max 2.36), train acc of the last 30 steps 30.1 %, logit std 0.282 -> 0.858
    srelu T=40           loss 2.39 -> 1.91 (max 2.5), train acc of the last 30 steps 22.9 %, logit std 0.393 -> 1.01
    srelu T=1 lr 0.001   loss 21.9 -> 1.95 (max 27.9), train acc of the last 30 steps 25.7 %, logit std 15.7 -> 1.1
    1. Pearson kurtosis (Gaussian = 3), every value pooled over steps 0-20 / 20-50 / 50-200
                         baseline2         final-bn          srelu T=40        srelu T=1 lr 0.001
       dL/dlogits      7.9  7.7  7.8    7.8  7.8  7.7     8.1  8.0  7.8     7.0  7.7  7.7
       dL/dz           9.0  9.4  8.2   46.3 64.1 18.9     8.1  8.0  7.8     7.0  7.7  7.7
       dL/dh           1.6  1.8  2.0    7.6  8.1  3.8     1.4  1.4  1.5     2.0  1.6  1.7
       dL/dx           4.0  4.8  4.6   14.8 35.1 15.8     3.2  4.0  6.3     4.9  4.4  5.0
       dL/dW head      5.6  6.4  5.1    968  808  134      78  337  119     259 15.3 19.0
    2. P(|g| > 4 std) in steps 0-20 (Gaussian: 6.3e-05)
       run                        logits          z          h     head_x     head_w
       baseline2                0.00e+00   1.67e-03   0.00e+00   1.71e-04   3.44e-03
       final-bn                 0.00e+00   1.61e-02   4.36e-03   1.56e-02   4.61e-03
       srelu T=40               0.00e+00   0.00e+00   0.00e+00   0.00e+00   1.32e-02
       srelu T=1 lr 0.001       0.00e+00   0.00e+00   0.00e+00   0.00e+00   7.11e-03
    3. heavier-tailed than baseline2 in steps 0-20 (pooled kurtosis ratio to baseline2's)?
       logits  final-bn x0.99; srelu T=40 x1.02; srelu T=1 lr 0.001 x0.89
       z       final-bn x5.16 HEAVIER; srelu T=40 x0.90; srelu T=1 lr 0.001 x0.78
       h       final-bn x4.72 HEAVIER; srelu T=40 x0.86; srelu T=1 lr 0.001 x1.27
       head_x  final-bn x3.73 HEAVIER; srelu T=40 x0.81; srelu T=1 lr 0.001 x1.22
       head_w  final-bn x172.45 HEAVIER; srelu T=40 x13.92 HEAVIER; srelu T=1 lr 0.001 x46.17 HEAVIER
    4. |dW|/|W| per layer, step 0 -> mean of steps 50-200: baseline2 0.024-0.055 -> 0.010-0.041;
       final-bn 0.045-0.10 -> 0.010-0.036; srelu T=40 0.032-0.092 -> 0.015-0.055; srelu T=1
       lr 0.001 3.2-21 -> 0.084-0.23 (head.conv: 0.055, 0.065, 0.089, 21 at step 0)

    An independent PyTorch implementation (steps 0-20) measured kurtosis at z 9.0 / 23.9 / 8.0 /
    6.2 and at the head weight gradient 5.8 / 35 / 33 / 400 for the same four runs: the same
    picture. At "the head conv's input" it reported 3.6 / 8.1 / 3.2 / 39.5, which matches our
    dL/dx — the stream entering the head unit — for the first three runs (4.0 / 14.8 / 3.2), not
    dL/dh after the activation; its 39.5 for T=1 we do not see at lr 0.001 (4.9).

Takeaway
    At the network's output the paper's claim does not show here. dL/dlogits = softmax − onehot
    has the same shape (kurtosis ~8) in every run; with the scale layer dL/dz is that same
    gradient divided by T·H·W and copied to every position, so it keeps that shape (8.1 at
    T=40, 7.0 at T=1, vs 9.0 for baseline2). It is the net *with* a final BN but no other
    (final-bn) whose dL/dz, dL/dh and dL/dx have the longer tails (×4–5 baseline2's kurtosis):
    the final BN divides by the batch std of an unnormalised z and mixes positions on the way
    back. The longer tail that every BN-free body shows is in the head conv's *weight gradient*:
    kurtosis 78–968 against baseline2's 5.6 in steps 0-20, and still ×4–26 baseline2's in steps
    50-200. The likely source is h: dL/dW[c, k] = Σ h[..., c]·dL/dz[..., k] over the batch and
    positions, and in an sReLU body the channels of h are not normalised, so a few large
    channels give a few very large weight gradients — with or without the final BN (final-bn,
    which keeps it, has the heaviest tail of all). So: a "longer tail" early in training, yes,
    for the head's weight gradient in every net without BN in its body; no, for the gradient at
    the output z itself. Meanwhile the relative gradients |dW|/|W| of the scaled net stay at the
    BN net's size, which is what lets it train at lr 0.1.

Try next
    --steps 800 --phases 0 50 200 800   P2 §IV's phases (takes 4× longer)
    --low-lr 0.01                       T=1 at a learning rate where it explodes first
    --temperature 100                   another T for the scaled run
    --bits 32                           full-precision weights
"""
import numpy as np

from tinybin.models import wrn
from tinybin.probes import GRAD_LABELS, GRAD_POINTS, Probe, diagnose, plot_ccdf_phases, plot_over_time, short_run

import lesson

NEEDS_DATA = True
FIGURES = ["ccdf_z.png", "ccdf_h.png", "ccdf_head_x.png", "ccdf_head_w.png", "over_time_z.png", "over_time_h.png", "layer_grad_ratio.png"]
RESULT_KEYS = ["runs", "pooled", "tail_beyond_4std", "heavier_than_baseline2", "layer_grad_ratio", "phases"]
GAUSS_4STD = 6.33e-5  # P(|g| > 4 std) for a Gaussian


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--steps", type=int, default=200, help="SGD steps per run")
    parser.add_argument("--phases", type=int, nargs="+", default=[0, 20, 50, 200],
                        help="phase boundaries in steps: 0 20 50 200 means steps 0-20, 20-50, 50-200")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate of baseline2, final-bn, srelu T")
    parser.add_argument("--temperature", type=float, default=40.0, help="T of the scaled srelu run (the authors' 40)")
    parser.add_argument("--low-lr", type=float, default=0.001, help="learning rate of the srelu T=1 run")
    lesson.model_flags(parser)
    parser.add_argument("--sample", type=int, default=4096, help="gradient values kept per point and step")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.phases = min(args.steps, 10), [0, 4, 10]
    phases = [(a, min(b, args.steps)) for a, b in zip(args.phases[:-1], args.phases[1:]) if a < args.steps]
    (x_train, y_train), _ = lesson.load_cifar10(args)

    plan = {"baseline2": ("baseline2", None, args.lr), "final-bn": ("final-bn", None, args.lr),
            f"srelu T={args.temperature:g}": ("srelu", args.temperature, args.lr),
            f"srelu T=1 lr {args.low_lr:g}": ("srelu", 1.0, args.low_lr)}
    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch {args.batch}, "
          f"{args.steps} steps per run, seed {args.seed}; gradients in the summed-loss convention (x batch size)")
    probes, runs = {}, {}
    for label, (variant, T, lr) in plan.items():
        model = wrn(depth=args.depth, width=args.width, variant=variant, bits=args.bits, temperature=T, rng=args.seed)
        probe = Probe(model, sample=args.sample, seed=args.seed)
        hist = short_run(model, x_train, y_train, args.steps, lr, batch_size=args.batch, seed=args.seed, probe=probe)
        probe.close()
        probe.save(args.out, name=f"probes_{label.replace(' ', '_').replace('=', '')}")
        probes[label] = probe
        d = diagnose(hist)
        d.update(logit_std_first=probe.records[0]["logit_std"], logit_std_last=probe.records[-1]["logit_std"],
                 seconds_per_step=hist["seconds_per_step"])
        runs[label] = d
        print(f"  {label:20s} loss {d['loss0']:.3g} -> {d['final_loss']:.3g} (max {d['max_loss']:.3g}), "
              f"train acc of the last {d['window']} steps {100 * d['acc_last']:.1f} %, logit std "
              f"{d['logit_std_first']:.3g} -> {d['logit_std_last']:.3g}, {d['verdict']}")

    # ----- 1. pooled kurtosis per phase and point ----------------------------------------------
    pooled, tails = {}, {}
    print("\n1. Pearson kurtosis (Gaussian = 3) of every gradient value pooled over each phase, exact"
          " (from per-step power sums of the full tensors)")
    for point in GRAD_POINTS:
        print(f"   {GRAD_LABELS[point]}")
        print(f"     {'run':22s} " + " ".join(f"{f'steps {a}-{b}':>14s}" for a, b in phases))
        for label, probe in probes.items():
            ks = [probe.pooled(point, a, b)["kurtosis"] for a, b in phases]
            pooled.setdefault(label, {})[point] = {f"{a}-{b}": k for (a, b), k in zip(phases, ks)}
            print(f"     {label:22s} " + " ".join(f"{k:14.1f}" for k in ks))

    # ----- 2. the tail itself: how often is |g| beyond 4 std? ----------------------------------
    a, b = phases[0]
    print(f"\n2. P(|g| > 4 std) in steps {a}-{b}, from the subsampled values (Gaussian: {GAUSS_4STD:.1e})")
    print(f"   {'run':22s} " + " ".join(f"{p:>10s}" for p in GRAD_POINTS))
    for label, probe in probes.items():
        row = {}
        for point in GRAD_POINTS:
            v = probe.values(point, a, b).astype(np.float64)
            row[point] = float(np.mean(np.abs(v) > 4 * v.std())) if v.size else float("nan")
        tails[label] = row
        print(f"   {label:22s} " + " ".join(f"{row[p]:10.2e}" for p in GRAD_POINTS))

    # ----- 3. which points carry the longer tail? ----------------------------------------------
    first = f"{a}-{b}"
    print(f"\n3. heavier-tailed than baseline2 in steps {first} (pooled kurtosis ratio to baseline2's)?")
    heavier = {}
    for point in GRAD_POINTS:
        base = pooled["baseline2"][point][first]
        parts = []
        for label in probes:
            if label == "baseline2":
                continue
            ratio = pooled[label][point][first] / base
            heavier.setdefault(point, {})[label] = {"ratio": ratio, "heavier": bool(ratio > 1.5)}
            parts.append(f"{label} x{ratio:.2f}{' HEAVIER' if ratio > 1.5 else ''}")
        print(f"   {point:7s} " + "; ".join(parts))
    print("   (note: with the scale layer, dL/dz is dL/dlogits / (T·H·W) copied to every position, so its"
          " distribution has the logits' shape; a final BN mixes positions and channels on the way back)")

    # ----- 4. relative gradient per layer -------------------------------------------------------
    layer_ratio = {}
    print(f"\n4. |dW|/|W| per layer: step 0 and mean over steps {phases[-1][0]}-{phases[-1][1]}")
    names = list(probes["baseline2"].records[0]["layers"])
    print(f"   {'layer':22s} " + " ".join(f"{l[:16]:>16s}" for l in probes))
    for name in names:
        cells = []
        for label, probe in probes.items():
            r = probe.series("layers", name, "grad_ratio")
            late = float(np.mean(r[phases[-1][0]:phases[-1][1]]))
            layer_ratio.setdefault(label, {})[name] = {"step0": float(r[0]), "late": late}
            cells.append(f"{r[0]:7.3g} {late:8.3g}")
        print(f"   {name:22s} " + " ".join(f"{c:>16s}" for c in cells))

    # ----- figures -------------------------------------------------------------------------------
    for point in ("z", "h", "head_x", "head_w"):
        lesson.save_figure(plot_ccdf_phases(probes, point, phases), args, f"ccdf_{point}.png")
    for point in ("z", "h"):
        lesson.save_figure(plot_over_time(probes, point), args, f"over_time_{point}.png")
    plt = lesson.pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for label in probes:
        ax.semilogy([layer_ratio[label][n]["step0"] for n in names], "o-", ms=3, label=f"{label}, step 0")
    ax.set(xlabel="conv layer (stem … head)", ylabel="|dW| / |W|", title="relative weight gradient at step 0")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    lesson.save_figure(fig, args, FIGURES[-1])
    lesson.finish(args, {"runs": runs, "pooled": pooled, "tail_beyond_4std": tails, "heavier_than_baseline2": heavier,
                         "layer_grad_ratio": layer_ratio, "phases": phases})


if __name__ == "__main__":
    main()
