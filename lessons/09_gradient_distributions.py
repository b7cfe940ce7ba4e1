"""Lesson 09 — gradients early in training: is the "longer tail" in the shape or in the scale?

Question
    P2 (§III.D) compares nets without a final BN against the same nets with one. P2 says: "without
    a final BN layer, the distribution of gradients at the output early in training have a longer
    tail than when BN is included"; of the scale layer, that increasing T means "gradients
    propagating backwards early in training have a distribution with lower standard deviation";
    and that without BN "the gradients calculated at the output of the network are too high for
    high learning rates, and that the normalization of the final BN layer compensates for this".
    "Longer tail" can be read as a shape (kurtosis, the share of values beyond 4 std) or as a
    scale (std). tinybin reads "at the output" as dL/dz at the head conv's output z, where the
    final BN or ×1/T acts (dL/dlogits is printed too). Measured on every seed: final-bn (the net
    with a final BN), srelu T = 1 and srelu T = 40 (the same body without it, lr 0.1; T = 1
    explodes, lesson 07, so it runs 20 steps), and baseline2 (BN everywhere) as a further reference.

Run
    python lessons/09_gradient_distributions.py   (4 seeds; 18 minutes single-threaded on a 2-core
    machine shared with other jobs; --quick: 2 seeds, 6 steps, claims on steps 0-3)

Expected output (full run: WRN-20-1, 1-bit, the 4000 images of the shipped subset, batch 125, lr 0.1,
cosine laid out for 30 epochs, seeds 0-3, 40 steps per run (srelu T=1: 20); single-threaded;
per-step values (each step's full tensor), median over steps 0-20, then mean [range] over seeds)
                 kurtosis dL/dz        beyond 4 std          std dL/dz                   kurtosis dL/dW head
    baseline2    8.77 [8.4–9.17]       0.0037 [0.0017–0.0056]  0.00471 [0.00427–0.00513]   4.27 [4.01–4.59]
    final-bn     12.7 [9.87–16.2]      0.012 [0.0085–0.016]    7.95e-05 [1.24e-05–1.29e-04] 27.3 [15.3–41.4]
    srelu T=40   8.07 [8–8.1]          0 in every seed         1.17e-04 (all seeds)         17.8 [13.2–21.3]
    srelu T=1    5.93 [5.55–6.48]      0 in every seed         0.0056 [0.00518–0.00617]    6.06 [3.33–8.05]
    (dL/dlogits: kurtosis 5.5–8.1 in every seed and run; dL/dh 1.4–2.8, below a Gaussian's 3)
    CLAIM shape: dL/dz has a higher kurtosis in srelu T=1 than in final-bn: 0 of 4 (0.48× [0.34–0.57])
    CLAIM shape: ... in srelu T=40 than in final-bn: 0 of 4 (0.66× [0.50–0.82])
    CLAIM shape: more of dL/dz beyond 4 std in srelu T=1 / T=40 than in final-bn: 0 of 4, 0 of 4
    CLAIM shape: dL/dz has a higher kurtosis in final-bn than in baseline2: 4 of 4 (1.45× [1.13–1.85])
    CLAIM scale: std dL/dz larger in srelu T=1 than in final-bn: 4 of 4 (164× [41.5–461])
    CLAIM scale: std dL/dz lower in srelu T=40 than in srelu T=1: 4 of 4 (0.021× [0.019–0.0225])
    CLAIM scale: std dL/dz lower in srelu T=40 than in final-bn: 2 of 4 (3.4× [0.91–9.5])
    CLAIM shape: the head conv's weight gradient has a higher kurtosis in final-bn, srelu T=40 and
          srelu T=1 than in baseline2: 3 of 4 (the smallest of the three 1.42× [0.80–1.86] baseline2's)
    |dW|/|W| at step 0, over the layers: baseline2 0.023–0.052, final-bn 0.032–0.073,
    srelu T=40 0.039–0.10, srelu T=1 4.9–22

Takeaway
    In shape, P2's comparison goes the other way at z, in every seed: the net *with* the final BN
    has the longer tail (kurtosis 12.7 against 8.1 at T = 40 and 5.9 at T = 1; 1.2 % of dL/dz
    beyond 4 std against none). With ×1/T, dL/dz = (p − y)/(T·H·W) copied to every position, so it
    has the shape of dL/dlogits = softmax − onehot, bounded and the same in every net; the final
    BN's backward (1/σ_B)(g − mean g − x̂·mean(g·x̂)) varies with x̂ from position to position, and
    its tail grows as training goes on (21.6 in steps 20-40).

    In scale, P2's reading holds. Without ×1/T or a final BN (srelu T = 1) std dL/dz is 41–461×
    final-bn's over steps 0-20 (4 of 4; about 24× at step 0, lesson 08b, after which final-bn's
    falls as its σ_B(z) grows) and |dW|/|W| is 5–22 at step 0 against 0.03–0.07: these are the
    gradients "too high" for lr 0.1, and that run explodes at step 1 in every seed. Raising T to
    40 lowers std dL/dz 48× (4 of 4), to the final-bn net's order: below it in 2 of 4 seeds and
    up to 9× above it in the others, depending on how fast final-bn's σ_B(z) grows in that seed.

    A longer tail without BN does show in 3 of 4 seeds at the head conv's weight gradient: every
    net without BN in its body, final-bn included, has a higher per-step kurtosis there than
    baseline2 (27, 18 and 6.1 against 4.3); in seed 1 the exploded T = 1 run's is 3.3, below
    baseline2's 4.2. That is a tail of the body's unnormalised channels (dL/dW = Σ h·dL/dz), not of
    the output, and it is there with the final BN too. So: the final BN compensates for the
    *size* of the output gradient, which is what ×1/T also does; it does not shorten its tail.

Try next
    --steps 200 --phases 0 20 60 200    longer runs: does final-bn's tail at z keep growing?
    --low-lr 0.001                      also srelu T=1 at a learning rate where it does not explode
    --temperature 100                   another T for the scaled run
    --seeds 8                           more seeds
"""
import numpy as np

from tinybin.models import wrn
from tinybin.probes import GRAD_LABELS, GRAD_POINTS, Probe, diagnose, plot_ccdf_phases, plot_over_time, short_run

import lesson
import short_runs

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
            ks = [short_runs.cell(get("kurtosis", label, point, f"{a}-{b}").values()) for a, b in phases]
            ss = [short_runs.cell(get("std", label, point, f"{a}-{b}").values()) for a, b in phases]
            print(f"     {label:20s} " + " ".join(f"{c:>24s}" for c in ks) + " " + " ".join(f"{c:>24s}" for c in ss))

    print(f"\n2. P(|g| > 4 std) in steps {early}, each step's sample divided by that step's std "
          f"(Gaussian {GAUSS_4STD:.1e}); mean [range] over seeds")
    print(f"   {'run':20s} " + " ".join(f"{p:>24s}" for p in GRAD_POINTS))
    tails = {label: {p: {s: per_seed[s][label]["tail4"][p] for s in args.seeds} for p in GRAD_POINTS}
             for label in labels}
    for label in labels:
        print(f"   {label:20s} " + " ".join(f"{short_runs.cell(tails[label][p].values()):>24s}" for p in GRAD_POINTS))

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
