"""Lesson 09 — gradient distributions early in training: where is the "longer tail"?

Question
    The paper (§III.D) says that early in training, without a final BN, the distribution of
    gradients at the network's output has a longer tail. Measure it: train baseline2, final-bn
    and srelu T=40 at lr 0.1, srelu T=1 at lr 0.1 for its first 20 steps (it explodes at once,
    lesson 07: "early in training" is all it has) and at a lower learning rate for the whole run,
    on the same images with the same seed, and record every step's gradient at four points —
    dL/dlogits, dL/dz at the head conv's output z, dL/dh at the head conv's input h, dL/dx at
    the head unit's input x (the stream, before the head's BN→ReLU or sReLU), and the head conv's
    weight gradient. Which of them carry a heavier tail without the final BN?

Run
    python lessons/09_gradient_distributions.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run: WRN-20-1, 1-bit, the 4000 training images of the subset, batch 125,
cosine schedule laid out for 30 epochs, seed 0, 60 steps per run (srelu T=1 at lr 0.1: 20), run
single-threaded (TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1); condensed: part 1 shows per-step
medians for steps 0-20 / 20-60, the pooled value in brackets only where it says something, and
part 4 one row per run)
    baseline2            loss 2.31 -> 1.86 (max 2.31), train acc of the last 30 steps 32.9 %, logit std 0.282 -> 0.742
    final-bn             loss 2.36 -> 2.04 (max 2.36), train acc of the last 30 steps 20.7 %, logit std 0.282 -> 0.724
    srelu T=40           loss 2.39 -> 2.16 (max 2.39), train acc of the last 30 steps 18.5 %, logit std 0.393 -> 0.704
    srelu T=1 lr 0.001   loss 21.9 -> 2.06 (max 27.9), train acc of the last 30 steps 18.9 %, logit std 15.7 -> 0.741
    srelu T=1 lr 0.1     loss 21.9 -> 14 (max 1.03e+18), train acc of the last 20 steps 10.6 %: exploded, then dead
    1. Pearson kurtosis (Gaussian = 3) of each step's full gradient tensor, median over the steps
       of a phase [raw values pooled over the phase]
                       baseline2   final-bn            srelu T=40         T=1 lr 0.001       T=1 lr 0.1
       dL/dlogits      7.9  7.8    7.8  7.8            8.1  8.0           7.4  7.7           5.6
       dL/dz           8.5  8.8   16.9 15.2 [49.8 42.8] 8.1  8.0           7.4  7.7           5.6
       dL/dh           1.6  1.8    2.3  2.3 [8.1 5.4]  1.4  1.4           1.7  1.6           2.8
       dL/dx           3.7  4.5    6.0  7.2 [15.6 16.2] 3.2  4.4           4.1  4.3          13.7 [39.8]
       dL/dW head      4.1  4.2   43.6 35.3 [208 436] 20.6 20.3 [73 145] 10.4  9.0 [259 13] 8.0 [3220]
       (T=1 lr 0.1, dL/dx: 16 of its 20 steps have no kurtosis — overflow or an all-zero gradient)
    2. P(|g| > 4 std) in steps 0-20, each step's values divided by that step's std (Gaussian 6.3e-05)
       run                  logits        z        h   head_x   head_w
       baseline2                 0  2.4e-03        0  4.9e-05  1.5e-03
       final-bn                  0  1.6e-02        0  7.3e-04  1.5e-02
       srelu T=40                0        0        0        0  1.2e-02
       srelu T=1 lr 0.001        0        0        0        0  9.8e-03
       srelu T=1 lr 0.1          0        0        0  2.5e-02  3.3e-03
    3. per-step median kurtosis over baseline2's in steps 0-20 (HEAVIER: > 1.5)
       z       final-bn x1.98 HEAVIER; srelu T=40 x0.95; T=1 lr 0.001 x0.87; T=1 lr 0.1 x0.66
       head_x  final-bn x1.64 HEAVIER; srelu T=40 x0.88; T=1 lr 0.001 x1.13; T=1 lr 0.1 x3.72 HEAVIER
       head_w  final-bn x10.54, srelu T=40 x4.98, T=1 lr 0.001 x2.50, T=1 lr 0.1 x1.94: all HEAVIER
    4. |dW|/|W| per layer, step 0 -> mean of steps 20-60: baseline2 0.024-0.055 -> 0.010-0.033;
       final-bn 0.045-0.10 -> 0.0027-0.039; srelu T=40 0.032-0.092 -> 0.020-0.053; T=1 (both
       runs) 3.2-21 at step 0, then 0.10-0.26 at lr 0.001; the run at lr 0.1 is dead from step 4

    The same lesson run with two threads (the default) rounds its float32 sums in another order;
    its runs drift apart from these after a few dozen steps. Steps 0-20 agree within 15 %
    (dL/dz 8.6 / 16.2 / 8.1 / 7.4; dL/dW head 4.0 / 39.2 / 23.7 / 10.0), while final-bn's steps
    20-60 gave 22.2 instead of 15.2 at z and its pooled dL/dW head 168 and 302 instead of 208 and
    436. The per-step medians of steps 0-20 are the numbers to trust; the pooled ones are not.

    An independent PyTorch implementation measured, over steps 0-20 of the same four kinds of
    run (its fourth at lr 0.1, like our last one), kurtosis at z 9.0 / 23.9 / 8.0 / 6.2, at the
    head conv's input 3.6 / 8.1 / 3.2 / 39.5 and at the head weight gradient 5.8 / 35 / 33 / 400.
    These are values pooled over the steps: ours, pooled the same way, are 9.0 / 49.8 / 8.1 / 5.6
    at z, 4.0 / 15.6 / 3.2 / 39.8 at dL/dx (the stream entering the head unit: its "input" is
    our dL/dx, not dL/dh after the activation) and 5.6 / 208 / 73 / 3220 at the head weights.
    Baseline2, srelu T=40 and T=1 at lr 0.1 agree at z and x. final-bn's pooled values, and the
    BN-free nets' pooled values at the head weights (2.2-8× theirs), differ most: pooled values
    depend on how far the gradient's std drifts within the 20 steps, as between our own two runs.

Takeaway
    At the network's output the paper's "longer tail" does not show. dL/dlogits = softmax − onehot
    has the same shape in every run (kurtosis 5.6-8.1 in steps 0-20); with the scale layer dL/dz
    is that gradient divided by T·H·W and copied to every position, so it keeps that shape (8.1 at
    T=40 against baseline2's 8.5), and nothing lies beyond 4 std. The net with a final BN and no
    other BN (final-bn) is the one whose dL/dz, dL/dh and dL/dx have longer tails early on (per-step
    kurtosis ×1.5-2 baseline2's, 1.6 % of dL/dz beyond 4 std against 0.24 %): the final BN divides
    by the batch std of an unnormalised z and mixes positions on the way back.

    Where every BN-free body has the longer tail is the head conv's weight gradient: per-step
    kurtosis 44 (final-bn), 21 (srelu T=40), 10 (T=1 at lr 0.001) and 8 (T=1 at lr 0.1) against
    baseline2's 4.1 in steps 0-20, and about the same in steps 20-60 (35 / 20 / 9 against 4.2). dL/dW[c, k]
    = Σ h[..., c]·dL/dz[..., k] over the batch and positions, and in a body without BN the
    channels of h are not normalised, so a few large channels give a few very large weight
    gradients. Pooling raw values over steps inflates these numbers (73-3220 for the BN-free
    nets in steps 0-20) because the gradient's std drifts from step to step; the per-step
    medians are what survives.

    As for sizes, which is what "too high" is about (ccdf_raw_*.png): srelu T=1 at lr 0.1 has head
    weight gradients up to ~1e20 in its first 20 steps (T=1 at lr 0.001 up to ~1e3, the others
    below ~30), and relative gradients |dW|/|W| of 3.2-21 at step 0: it explodes at step 1 (loss
    1.0e18 by step 3) and is dead from step 4. The scale layer brings the same net to 0.032-0.092 at step 0,
    the BN nets' size (baseline2 0.024-0.055), which is what lets it train at lr 0.1. So: a
    "longer tail" early in training, yes, for the head's weight gradient in every net without BN
    in its body, and for the gradients at z, h and x of final-bn; no, for the gradient at the
    output z of the scaled nets. The gradients that are too high are
    those of the unscaled net at lr 0.1.

Try next
    --steps 200 --phases 0 20 60 200    longer runs: does the weight gradient's tail persist?
    --low-lr 0.01                       T=1 at a learning rate where it explodes first
    --temperature 100                   another T for the scaled run
    --bits 32                           full-precision weights
"""
import numpy as np

from tinybin.models import wrn
from tinybin.probes import GRAD_LABELS, GRAD_POINTS, Probe, diagnose, plot_ccdf_phases, plot_over_time, short_run

import lesson

NEEDS_DATA = True
FIGURES = ["shape_and_scale.png", "ccdf_z.png", "ccdf_head_x.png", "ccdf_head_w.png", "ccdf_raw_z.png",
           "over_time_z.png", "layer_grad_ratio.png"]
RESULT_KEYS = ["runs", "per_step_kurtosis", "per_step_std", "tail_beyond_4std", "layer_grad_ratio", "phases"]
GAUSS_4STD = 6.33e-5  # P(|g| > 4 std) for a Gaussian
REF = "final-bn"      # the net with a final BN, against which P2 compares the nets without one


class PerStep:
    """A probe's gradient samples with each step's values divided by that step's std (of the
    full tensor): pooled over steps, they compare shapes, not a drifting scale."""

    def __init__(self, probe):
        self.probe = probe

    def values(self, point, first=0, last=None):
        std = {r["step"]: r["grad"][point]["std"] for r in self.probe.records if point in r["grad"]}
        last = max(std) + 1 if last is None else last
        parts = [self.probe.values(point, t, t + 1).astype(np.float64) / std[t]
                 for t in range(first, last) if std.get(t, 0) > 0]
        return np.concatenate(parts) if parts else np.zeros(0)


def finite_median(a):
    """Median of the finite values (a step whose gradient overflowed or is all zero has no
    kurtosis); NaN if none."""
    a = np.asarray(a, np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def measure(args, x, y, seed, plan, phases):
    """Every run of the plan on one seed: per point and phase, the median over steps of each
    step's kurtosis and std, the share of values beyond 4 std (first phase) and |dW|/|W| per layer."""
    out = {}
    for label, (variant, T, lr, steps) in plan.items():
        model = wrn(depth=args.depth, width=args.width, variant=variant, bits=args.bits, temperature=T, rng=seed)
        probe = Probe(model, sample=args.sample, seed=seed)
        hist = short_run(model, x, y, steps, lr, batch_size=args.batch, seed=seed, probe=probe)
        probe.close()
        d = diagnose(hist)
        r = {"diagnose": d, "kurtosis": {}, "std": {}, "tail4": {}, "layers": {}, "probe": probe}
        for point in GRAD_POINTS:
            k, s = probe.series("grad", point, "kurtosis"), probe.series("grad", point, "std")
            for a, b in phases:
                if a < len(k):
                    r["kurtosis"].setdefault(point, {})[f"{a}-{b}"] = finite_median(k[a:b])
                    r["std"].setdefault(point, {})[f"{a}-{b}"] = finite_median(s[a:b])
            a, b = phases[0]
            v = PerStep(probe).values(point, a, b)
            r["tail4"][point] = float(np.mean(np.abs(v) > 4)) if v.size else float("nan")
        for name in probe.records[0]["layers"]:
            ratio = probe.series("layers", name, "grad_ratio")
            r["layers"][name] = float(ratio[0])
        print(f"  seed {seed}  {label:20s} loss {d['loss0']:.3g} -> {d['final_loss']:.3g} (max {d['max_loss']:.3g}), "
              f"acc of the last {d['window']} steps {100 * d['acc_last']:.1f} %, {d['verdict']}", flush=True)
        out[label] = r
    return out


def main():
    parser = lesson.parser(__doc__, __file__)
    lesson.seeds_flag(parser, full=4, quick=2)
    parser.add_argument("--steps", type=int, default=40, help="SGD steps per run")
    parser.add_argument("--phases", type=int, nargs="+", default=[0, 20, 40],
                        help="phase boundaries in steps: 0 20 40 means steps 0-20 (early: the claims) and 20-40")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate of every run")
    parser.add_argument("--temperature", type=float, default=40.0, help="T of the scaled srelu run (the authors' 40)")
    parser.add_argument("--early-steps", type=int, default=20, help="steps of srelu T=1 (it explodes at lr 0.1)")
    parser.add_argument("--low-lr", type=float, default=None, help="also train srelu T=1 at this learning rate")
    lesson.model_flags(parser)
    parser.add_argument("--sample", type=int, default=4096, help="gradient values kept per point and step")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.phases, args.early_steps = min(args.steps, 6), [0, 3, 6], min(args.early_steps, 6)
    phases = [(a, min(b, args.steps)) for a, b in zip(args.phases[:-1], args.phases[1:]) if a < args.steps]
    early = f"{phases[0][0]}-{phases[0][1]}"
    (x_train, y_train), _ = lesson.load_cifar10(args)

    t40, t1 = f"srelu T={args.temperature:g}", "srelu T=1"
    plan = {"baseline2": ("baseline2", None, args.lr, args.steps), REF: ("final-bn", None, args.lr, args.steps),
            t40: ("srelu", args.temperature, args.lr, args.steps), t1: ("srelu", 1.0, args.lr, min(args.early_steps, args.steps))}
    if args.low_lr:
        plan[f"srelu T=1 lr {args.low_lr:g}"] = ("srelu", 1.0, args.low_lr, args.steps)
    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch {args.batch}, "
          f"lr {args.lr:g}, {args.steps} steps per run ({t1}: {plan[t1][3]}), seeds {args.seeds}; gradients in the "
          "summed-loss convention (× batch size)")
    per_seed = {s: measure(args, x_train, y_train, s, plan, phases) for s in args.seeds}
    labels = list(plan)
    get = lambda key, label, point, ph=early: {s: per_seed[s][label][key].get(point, {}).get(ph, np.nan)
                                               for s in args.seeds}

    # ----- 1. shape and scale, per point, over seeds ---------------------------------------------
    print(f"\n1. per-step kurtosis (Gaussian = 3) and std of each step's full gradient tensor, median over the "
          f"steps of a phase; mean [range] over {len(args.seeds)} seeds")
    for point in GRAD_POINTS:
        print(f"   {GRAD_LABELS[point]}")
        print(f"     {'run':20s} " + " ".join(f"{f'kurtosis {a}-{b}':>24s}" for a, b in phases) +
              " " + " ".join(f"{f'std {a}-{b}':>24s}" for a, b in phases))
        for label in labels:
            ks = [lesson.cell(get("kurtosis", label, point, f"{a}-{b}").values()) for a, b in phases]
            ss = [lesson.cell(get("std", label, point, f"{a}-{b}").values()) for a, b in phases]
            print(f"     {label:20s} " + " ".join(f"{c:>24s}" for c in ks) + " " + " ".join(f"{c:>24s}" for c in ss))

    print(f"\n2. P(|g| > 4 std) in steps {early}, each step's sample divided by that step's std "
          f"(Gaussian {GAUSS_4STD:.1e}); mean [range] over seeds")
    print(f"   {'run':20s} " + " ".join(f"{p:>24s}" for p in GRAD_POINTS))
    tails = {label: {p: {s: per_seed[s][label]["tail4"][p] for s in args.seeds} for p in GRAD_POINTS}
             for label in labels}
    for label in labels:
        print(f"   {label:20s} " + " ".join(f"{lesson.cell(tails[label][p].values()):>24s}" for p in GRAD_POINTS))

    # ----- 3. P2's comparison, as claims -------------------------------------------------------
    print(f"\n3. P2 §III.D, read at z (the head conv's output, where the final BN or ×1/T acts), steps {early}:")
    kz = {label: get("kurtosis", label, "z") for label in labels}
    sz = {label: get("std", label, "z") for label in labels}
    tz = {label: tails[label]["z"] for label in labels}
    ratio = lambda a, b: {s: a[s] / b[s] for s in args.seeds}
    claims = []
    for label in (t1, t40):
        claims.append(lesson.claim(f"shape: dL/dz has a higher per-step kurtosis in {label} (no final BN) than in "
                                   f"{REF}", {s: kz[label][s] > kz[REF][s] for s in args.seeds},
                                   ratio(kz[label], kz[REF]), unit="× final-bn's"))
        claims.append(lesson.claim(f"shape: more of dL/dz lies beyond 4 std in {label} than in {REF}",
                                   {s: tz[label][s] > tz[REF][s] for s in args.seeds},
                                   {s: tz[label][s] - tz[REF][s] for s in args.seeds}, unit=" (difference)"))
    claims.append(lesson.claim(f"shape: dL/dz has a higher per-step kurtosis in {REF} than in baseline2",
                               {s: kz[REF][s] > kz["baseline2"][s] for s in args.seeds},
                               ratio(kz[REF], kz["baseline2"]), unit="× baseline2's"))
    claims.append(lesson.claim(f"scale: std dL/dz is larger in {t1} than in {REF} (no ×1/T: gradients 'too high')",
                               {s: sz[t1][s] > sz[REF][s] for s in args.seeds}, ratio(sz[t1], sz[REF]),
                               unit="× final-bn's", assert_in_quick=True))
    claims.append(lesson.claim(f"scale: std dL/dz is lower in {t40} than in {t1} ('lower standard deviation')",
                               {s: sz[t40][s] < sz[t1][s] for s in args.seeds}, ratio(sz[t40], sz[t1]),
                               unit="× T=1's", assert_in_quick=True))
    claims.append(lesson.claim(f"scale: std dL/dz is lower in {t40} than in {REF}",
                               {s: sz[t40][s] < sz[REF][s] for s in args.seeds}, ratio(sz[t40], sz[REF]),
                               unit="× final-bn's"))
    kw = {label: get("kurtosis", label, "head_w") for label in labels}
    claims.append(lesson.claim(f"shape: the head conv's weight gradient has a higher per-step kurtosis in every net "
                               f"without BN in its body ({REF}, {t40}, {t1}) than in baseline2",
                               {s: min(kw[l][s] for l in (REF, t40, t1)) > kw["baseline2"][s] for s in args.seeds},
                               {s: min(kw[l][s] for l in (REF, t40, t1)) / kw["baseline2"][s] for s in args.seeds},
                               unit="× baseline2's (the smallest of the three)"))

    # ----- 4. relative weight gradient per layer at step 0 --------------------------------------
    names = list(per_seed[args.seeds[0]]["baseline2"]["layers"])
    layer_ratio = {label: {n: {s: per_seed[s][label]["layers"][n] for s in args.seeds} for n in names}
                   for label in labels}
    print("\n4. |dW|/|W| at step 0, range over the layers (mean over seeds per layer)")
    for label in labels:
        m = [np.mean(list(layer_ratio[label][n].values())) for n in names]
        print(f"   {label:20s} {min(m):.3g}–{max(m):.3g} (head conv {m[-1]:.3g})")

    # ----- figures ------------------------------------------------------------------------------
    plt = lesson.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for i, label in enumerate(labels):
        for ax, vals in zip(axes, (kz[label], tz[label], sz[label])):
            v = np.array([vals[s] for s in args.seeds], np.float64)
            ax.plot(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, "o", ms=5, label=label)
    for ax, title in zip(axes, ("kurtosis of dL/dz (Gaussian 3)", "share of dL/dz beyond 4 std (linear)",
                                "std of dL/dz (scale)")):
        ax.set_yscale("linear" if ax is axes[1] else "log")
        ax.set_xticks(range(len(labels)), [l.replace("srelu ", "") for l in labels], fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3, which="both")
    axes[0].axhline(3, color="k", ls=":", lw=1)
    axes[1].axhline(GAUSS_4STD, color="k", ls=":", lw=1)
    fig.suptitle(f"dL/dz, steps {early}: per-step median, one dot per seed ({len(args.seeds)} seeds, {args.steps} "
                 f"steps per run; {t1}: {plan[t1][3]}); dotted: Gaussian", fontsize=9)
    lesson.save_figure(fig, args, FIGURES[0])
    s0 = args.seeds[0]
    probes = {label: per_seed[s0][label]["probe"] for label in labels}
    shapes = {label: PerStep(p) for label, p in probes.items()}
    note = f" — seed {s0}, steps that ran: {', '.join(f'{l} {len(p.records)}' for l, p in probes.items())}"
    for point in ("z", "head_x", "head_w"):
        fig = plot_ccdf_phases(shapes, point, phases)
        fig.suptitle(fig._suptitle.get_text() + note, fontsize=8)
        lesson.save_figure(fig, args, f"ccdf_{point}.png")
    fig = plot_ccdf_phases(probes, "z", phases, normalise=False)
    fig.suptitle(fig._suptitle.get_text() + " (raw: sizes)" + note, fontsize=8)
    lesson.save_figure(fig, args, "ccdf_raw_z.png")
    fig = plot_over_time(probes, "z")
    fig.suptitle(f"{GRAD_LABELS['z']} per step" + note, fontsize=8)
    lesson.save_figure(fig, args, "over_time_z.png")
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for label in labels:
        ax.semilogy([np.mean(list(layer_ratio[label][n].values())) for n in names], "o-", ms=3, label=label)
    ax.set(xlabel="conv layer (stem … head)", ylabel="|dW| / |W|",
           title=f"relative weight gradient at step 0, mean over {len(args.seeds)} seeds")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    lesson.save_figure(fig, args, FIGURES[-1])

    runs = {label: {str(s): {k: v for k, v in per_seed[s][label]["diagnose"].items()} for s in args.seeds}
            for label in labels}
    lesson.finish(args, {"runs": runs, "per_step_kurtosis": {l: {p: get("kurtosis", l, p) for p in GRAD_POINTS}
                                                             for l in labels},
                         "per_step_std": {l: {p: get("std", l, p) for p in GRAD_POINTS} for l in labels},
                         "tail_beyond_4std": tails, "layer_grad_ratio": layer_ratio, "phases": phases}, claims)


if __name__ == "__main__":
    main()
