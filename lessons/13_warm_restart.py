"""Lesson 13 — warm restarts: the learning rate jumps back to 0.1, twice, on five seeds.

Question
    P2 says: "Unlike [10], we did not use a warm restart learning rate schedule, as we found this
    could sometimes lead to divergence following a restart with the sReLU networks." (§III.A).
    [10] is P1, whose cosine restarts after 2, 6, 14, ... epochs. P2 names no epoch, and its
    "sReLU networks" are not only srelu (×1/T before the pool): final-bn has sReLU units too, with
    one BN before the pool. What does a restart do to each, on the same initial weights and the
    same batches, seed after seed? And tinybin's own hypothesis, from an earlier one-seed version
    of this lesson: final-bn divides z by σ_B(z), which follows z's scale as the weights change,
    srelu by a fixed T = 40 -- so does σ_B(z) at the restart predict which restarts cost accuracy?

Run
    python lessons/13_warm_restart.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run: WRN-20-1, 1-bit, a class-balanced 1000 of the subset's training
images (8 steps of 125 an epoch), seeds 0-4, both nets on every seed; a cosine from 0.1 to 1e-5
over 16 steps (2 epochs, P1's first cycle), the lr back at 0.1 for a second cosine of 16 steps,
a restart at step 32 (epoch 4; P1's second cycle would be twice as long), then 8 steps. Each
restart compares the 8 steps after it with the 8 before. 5.6 minutes single-threaded
(TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1) on a 2-core machine with no other run going.
Every digit below is the same as in the previous full run, before the direct kernels took the
stride-2 layers and the stem's weight gradient (in results.json only the updates' sizes
|ΔW|/|W| and the ratios of them moved, by < 1e-7 relative). The change before that, stage 3's
weight gradient by Winograd rather than im2col, had moved one number of the 20 restarts (srelu seed 0 at step 32, −2.0 →
−2.4 points) and no verdict.)
    seed 0 srelu    restart at step  16: acc 13.8 → 13.7 % (-0.1), |ΔW|/|W| 0.0022 → 0.0027, σ_B(z) 7.23 ...
    seed 0 final-bn restart at step  16: acc 22.3 → 25.3 % (+3.0), |ΔW|/|W| 0.0033 → 0.004, σ_B(z) 164 ...
    ...
    CLAIM srelu: neither explodes nor dies after the restart at step 16 (epoch 2): holds in 5 of 5 seeds
    CLAIM srelu: the restart at step 16 (epoch 2) costs training accuracy (8 steps after vs before):
          holds in 2 of 5 seeds  (mean 0.64 points, range -1.5–2.7 points)
    CLAIM final-bn: the restart at step 16 (epoch 2) costs training accuracy (...): holds in 0 of 5 seeds
          (mean 1.8 points, range 0–3.6 points)
    CLAIM the restart at step 16 (epoch 2) costs srelu more accuracy than final-bn: holds in 4 of 5 seeds
          (mean -1.16 points, range -3.1–1.5 points)
    CLAIM srelu: the restart at step 32 (epoch 4) makes the updates larger: holds in 5 of 5 seeds (mean 2.21×)
    CLAIM final-bn: the restart at step 32 (epoch 4) makes the updates larger: holds in 5 of 5 seeds (mean 1.5×)
    CLAIM srelu: the restart at step 32 (epoch 4) costs training accuracy: holds in 3 of 5 seeds
          (mean 0.46 points, range -2.4–4.2 points)
    CLAIM final-bn: the restart at step 32 (epoch 4) costs training accuracy: holds in 2 of 5 seeds
          (mean 0.66 points, range -1.1–2.1 points)
    CLAIM the restart at step 32 (epoch 4) costs srelu more accuracy than final-bn: holds in 3 of 5 seeds
          (mean -0.2 points, range -3.9–5.3 points)
    CLAIM final-bn's updates after the restart at step 32 (epoch 4) are smaller than srelu's: holds in
          3 of 5 seeds (srelu / final-bn: mean 1.33×, range 0.741–2.09×)
    srelu: σ_B(z) at the restart against the accuracy change, 10 restarts (5 cost accuracy): rank
          correlation -0.60; no threshold on σ_B(z) separates those that cost accuracy from the others
    final-bn: ... 10 restarts (2 cost accuracy): rank correlation -0.31; no threshold on σ_B(z)
          separates those that cost accuracy from the others
    (acc: training accuracy of the augmented batches, chance 10 %; |ΔW|/|W|: the update's size
    relative to the weights, median over the 20 convs, 5 steps before / after; σ_B(z): the batch
    std of the head conv's output z, median over its 10 channels, at the last step before the
    restart: final-bn divides by it, srelu by T = 40.)

Takeaway
    No restart made either net explode or die, in 20 of 20 (5 seeds × 2 restarts × 2 nets; the
    divergence test of tinybin.train.divergence). Whether a restart costs accuracy varies from seed
    to seed, for both nets: srelu lost accuracy at 2 of 5 restarts after 2 epochs and 3 of 5 after
    4; final-bn at 0 of 5 and 2 of 5. The changes are small, −2.4 to +4.2 points, against a
    standard error of 1.8 points for the difference of two 1000-image accuracies near 20 %; at
    this scale the nets have barely learned (srelu 11–19 %, final-bn 17–24 % before a restart).
    The restart after 2 epochs cost srelu more than final-bn in 4 of 5 seeds, the one after 4
    epochs in 3 of 5: the direction of P2's remark, not a result.

    σ_B(z) does not predict the outcome here. final-bn's σ_B(z) at a restart ranges over 34–556
    between seeds, yet its rank correlation with the accuracy change is −0.31 (the hypothesis
    wants it positive: a larger divisor, a smaller step on the logits), and no threshold
    separates the restarts that cost accuracy from the others. For srelu (divided by the fixed
    40) it is −0.60 and again no threshold separates; its σ_B(z) grows over the run (3–19 at the
    first restart, 12–40 at the second), so it mostly tells the two restarts apart (a reading,
    not tested here). Nor are final-bn's updates reliably smaller: smaller than srelu's in 1 of
    5 seeds after the first restart, 3 of 5 after the second. So the earlier
    one-seed reading ("what decides it is how large σ_B(z) has grown") is not supported.

    The restart at step 16 enlarged the updates in only 2 of 5 srelu seeds and 4 of 5 final-bn
    seeds. tinybin's reading: with momentum 0.9 (v ← 0.9·v − lr·g) the update remembers ~10 steps
    of larger lr, and a 16-step cosine leaves too little time to forget them. After the second
    restart the updates grew in every seed (srelu 2.2×, final-bn 1.5×). P2 gives no epoch, data
    size or rate for its divergence ("could sometimes"); this lesson tests 40 steps on 1000
    images, and a divergence may need far more weight movement, or far more seeds, than that.

Try next
    --images 2000 --cycles 32 32 --after 16 --window 16   restarts at epochs 2 and 4 of 2000 images (~2× longer)
    --cycles 16 32                 P1's doubling: restarts at epochs 2 and 6
    --temperature 100              a softer (hotter) softmax for srelu: smaller logits and gradients
    --seeds 10                     more seeds for the k-of-n verdicts
"""
import numpy as np

from tinybin.data import Batches, balanced_subset
from tinybin.models import wrn
from tinybin.optim import SGD, cosine_lr
from tinybin.probes import Probe
from tinybin.train import train_step
from tinybin.train.divergence import diagnose, same_output

import lesson

NEEDS_DATA = True
FIGURES = ["warm_restart.png"]
RESULT_KEYS = ["runs", "restarts", "cycles", "prediction"]
NETS = ("srelu", "final-bn")


def restart_lr(step, cycles, lr_max, lr_min=1e-5):
    """Warm restarts: a cosine from lr_max to lr_min over each of `cycles` (steps), the lr back at
    lr_max at the start of the next; after the last restart, a cosine twice as long (P1 doubles)."""
    start = 0
    for c in cycles:
        if step < start + c:
            return cosine_lr(step - start, c, lr_max, lr_min)
        start += c
    return cosine_lr(step - start, 2 * cycles[-1], lr_max, lr_min)


def run(args, x, y, variant, seed):
    """The paper's recipe (momentum 0.9, weight decay 5e-4, flip + crop + cutout) on restart_lr;
    seed: the initial weights and the batch order."""
    model = wrn(depth=args.depth, width=args.width, variant=variant, bits=args.bits,
                temperature=args.temperature if variant == "srelu" else None, rng=seed)
    probe = Probe(model, sample=0, activations=False)
    optimizer = SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    loader = Batches(x, y, batch_size=args.batch, shuffle=True, drop_last=True, augment=True, seed=seed)
    sigma = []   # σ_B(z) at the head conv's output, median over channels: final-bn divides by it, srelu by T
    model.head.final.register_forward_hook(
        lambda m, z, out: sigma.append(np.median(z.data.reshape(-1, z.shape[-1]).std(axis=0, dtype=np.float64))))
    hist = {"loss": [], "acc": [], "lr": [], "same_output": []}
    total = sum(args.cycles) + args.after
    model.train()
    for epoch in range(10 ** 6):
        for xb, yb in loader.epoch(epoch):
            lr = restart_lr(len(hist["loss"]), args.cycles, args.lr)

            def after_backward(m, logits, loss, yb=yb):
                probe.after_backward(m, logits, loss, yb)
                hist["same_output"].append(same_output(logits))

            loss, correct = train_step(model, optimizer, xb, yb, lr, after_backward, probe.after_step)
            hist["loss"].append(loss)
            hist["acc"].append(correct / len(yb))
            hist["lr"].append(lr)
            if len(hist["loss"]) == total:
                break
        if len(hist["loss"]) == total:
            break
    probe.close()
    update = [np.median([v["update_ratio"] for v in r["layers"].values()]) for r in probe.records]
    return hist | {"update_ratio": np.array(update), "sigma": np.array(sigma)}


def at_restart(args, h, c, end):
    """One restart at step c: `window` steps before it against `window` after it; the segment up to
    `end` (the next restart, or the end of the run) diagnosed by tinybin.train.divergence."""
    w, u = args.window, min(5, args.window)
    acc, upd = np.asarray(h["acc"]), h["update_ratio"]
    seg = diagnose({k: h[k][c:end] for k in ("loss", "acc", "same_output")}, window=min(w, end - c))
    return {"step": c, "acc_before": 100 * acc[c - w:c].mean(), "acc_after": 100 * acc[c:c + w].mean(),
            "delta_acc": 100 * (acc[c:c + w].mean() - acc[c - w:c].mean()),
            "update_before": float(np.median(upd[c - u:c])), "update_after": float(np.median(upd[c:c + u])),
            "sigma": float(h["sigma"][c - 1]), "sigma_after_max": float(np.max(h["sigma"][c:end])),
            "max_loss_after": float(np.nanmax(h["loss"][c:end])), "verdict": seg["verdict"]}


def spearman(a, b):
    """Rank correlation of two sequences (no ties expected in measured floats)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def separates(sigma, hurt):
    """A threshold on σ_B(z) that puts every hurt restart on one side and every other on the
    other, or None."""
    sigma, hurt = np.asarray(sigma), np.asarray(hurt, bool)
    if hurt.all() or not hurt.any():
        return None
    for low, high in ((sigma[hurt], sigma[~hurt]), (sigma[~hurt], sigma[hurt])):
        if low.max() < high.min():
            return float(np.sqrt(low.max() * high.min()))
    return None


def claims_for(args, rs, restarts):
    """The comparisons, restart by restart, each over the seeds."""
    seeds, out = args.seeds, []
    for i, c in enumerate(restarts):
        r = {net: {s: rs[net][s][i] for s in seeds} for net in NETS}
        where = f"the restart at step {c} (epoch {c // args.steps_per_epoch})"
        for net in NETS:
            out.append(lesson.claim(f"{net}: {where} makes the updates larger (|ΔW|/|W| after / before)",
                                    {s: r[net][s]["update_after"] > r[net][s]["update_before"] for s in seeds},
                                    values={s: r[net][s]["update_after"] / r[net][s]["update_before"] for s in seeds},
                                    unit="×"))
            out.append(lesson.claim(f"{net}: neither explodes nor dies after {where}",
                                    {s: r[net][s]["verdict"] in ("learning", "at chance") for s in seeds}))
            out.append(lesson.claim(f"{net}: {where} costs training accuracy ({args.window} steps after vs before)",
                                    {s: r[net][s]["delta_acc"] < 0 for s in seeds},
                                    values={s: r[net][s]["delta_acc"] for s in seeds}, unit=" points"))
        out.append(lesson.claim(f"{where} costs srelu more accuracy than final-bn",
                                {s: r["srelu"][s]["delta_acc"] < r["final-bn"][s]["delta_acc"] for s in seeds},
                                values={s: r["srelu"][s]["delta_acc"] - r["final-bn"][s]["delta_acc"] for s in seeds},
                                unit=" points"))
        out.append(lesson.claim(f"final-bn's updates after {where} are smaller than srelu's",
                                {s: r["final-bn"][s]["update_after"] < r["srelu"][s]["update_after"] for s in seeds},
                                values={s: r["srelu"][s]["update_after"] / r["final-bn"][s]["update_after"]
                                        for s in seeds}, unit="× (srelu / final-bn)"))
    return out


def prediction(rs):
    """Does σ_B(z) at the restart predict the accuracy change? Over every (seed, restart) of a net."""
    out = {}
    for net in NETS:
        pts = [p for per_seed in rs[net].values() for p in per_seed]
        sigma, delta = [p["sigma"] for p in pts], [p["delta_acc"] for p in pts]
        hurt = [d < 0 for d in delta]
        out[net] = {"rho": spearman(sigma, delta), "threshold": separates(sigma, hurt), "n": len(pts),
                    "hurt": int(sum(hurt))}
        t = out[net]["threshold"]
        print(f"{net}: σ_B(z) at the restart against the accuracy change, {len(pts)} restarts ({sum(hurt)} cost "
              f"accuracy): rank correlation {out[net]['rho']:+.2f}; "
              + (f"the threshold σ_B(z) = {t:.3g} separates those that cost accuracy from the others"
                 if t is not None else "no threshold on σ_B(z) separates those that cost accuracy from the others"))
    return out


def figure(args, runs, rs, restarts):
    plt = lesson.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(16, 7.5), layout="constrained")
    colours = {"srelu": "tab:blue", "final-bn": "tab:orange"}
    k = min(8, args.window)
    for net in NETS:
        for j, (s, h) in enumerate(runs[net].items()):
            lab = (f"srelu T={args.temperature:g}" if net == "srelu" else net) if j == 0 else None
            kw = dict(lw=0.7, alpha=0.8, color=colours[net], label=lab)
            axes[0, 0].semilogy(h["loss"], **kw)
            axes[0, 1].plot(np.arange(k - 1, len(h["acc"])), 100 * np.convolve(h["acc"], np.ones(k) / k, "valid"), **kw)
            axes[0, 2].semilogy(h["update_ratio"], **kw)
            axes[1, 0].semilogy(h["sigma"], **kw)
        for i, c in enumerate(restarts):
            pts = [rs[net][s][i] for s in args.seeds]
            axes[1, 1].scatter([p["sigma"] for p in pts], [p["delta_acc"] for p in pts], color=colours[net],
                               marker="o^sv"[i % 4], label=f"{net}, restart at step {c}")
            axes[1, 2].plot(np.full(len(pts), 2 * i + NETS.index(net)), [p["delta_acc"] for p in pts], "o",
                            color=colours[net], ms=5)
    axes[1, 0].axhline(args.temperature, color="tab:blue", ls=":", lw=1, label=f"srelu divides by T = {args.temperature:g}")
    axes[1, 1].set_xscale("log")
    axes[1, 2].set_xticks(range(2 * len(restarts)), [f"{n}\nstep {c}" for c in restarts for n in NETS], fontsize=8)
    for ax in (axes[1, 1], axes[1, 2]):
        ax.axhline(0, color="k", lw=0.8)
    titles = [["training loss", f"training accuracy % (mean of {k} batches)", "|ΔW|/|W| per step (median over convs)"],
              ["σ_B(z) before the pool (median over channels)", "σ_B(z) at the restart vs accuracy change",
               f"accuracy change, {args.window} steps after vs before"]]
    for i in range(2):
        for j in range(3):
            ax = axes[i, j]
            if i == 0 or j == 0:
                for c in restarts:
                    ax.axvline(c, color="k", ls="--", lw=0.8)
                ax.set_xlabel("step")
            ax.set_title(titles[i][j], fontsize=9)
            ax.grid(alpha=0.3, which="both")
    axes[1, 1].set(xlabel="σ_B(z) at the last step before the restart", ylabel="points")
    axes[1, 2].set_ylabel("points (dots: seeds)")
    for ax in (axes[0, 0], axes[1, 0], axes[1, 1]):
        ax.legend(fontsize=7)
    note = (f"\n--quick: cycles of {args.cycles[0]} steps, shorter than momentum's memory (~10 steps): too short "
            "to show which net a restart costs or whether σ_B(z) predicts it (run without --quick)" if args.quick else "")
    fig.suptitle(f"warm restarts at steps {', '.join(map(str, restarts))} (dashed): the lr back at {args.lr:g}; "
                 f"{len(args.seeds)} seeds, one line each{note}", fontsize=10)
    lesson.save_figure(fig, args, FIGURES[0])


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--cycles", type=int, nargs="+", default=[16, 16],
                        help="steps of each cosine; a restart follows each")
    parser.add_argument("--after", type=int, default=8, help="steps run after the last restart")
    parser.add_argument("--window", type=int, default=8, help="steps before / after a restart that are compared")
    parser.add_argument("--images", type=int, default=1000, help="class-balanced training images (chosen by --seed)")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate of every cosine")
    parser.add_argument("--temperature", type=float, default=40, help="T of the srelu net (the authors': 40)")
    lesson.model_flags(parser)
    lesson.seeds_flag(parser, full=5, quick=2)
    args = parser.parse_args()
    if args.quick:
        args.cycles, args.after, args.window, args.images = [5, 5], 3, 3, 500
    if min(args.cycles) < args.window or args.after < args.window or args.window < 1:
        parser.error(f"every cycle and --after must be at least --window >= 1 (got --cycles {args.cycles}, "
                     f"--after {args.after}, --window {args.window})")
    (x_train, y_train), _ = lesson.load_cifar10(args)
    if args.images < len(x_train):
        x_train, y_train = balanced_subset(x_train, y_train, n_total=args.images, seed=args.seed)
    args.steps_per_epoch = len(x_train) // args.batch
    restarts = [int(c) for c in np.cumsum(args.cycles)]
    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch {args.batch} "
          f"({args.steps_per_epoch} steps an epoch), seeds {args.seeds}: cosines from {args.lr:g} to 1e-5 over "
          f"{args.cycles} steps, restarts at steps {restarts}, then {args.after} steps")
    runs = {net: {} for net in NETS}
    rs = {net: {} for net in NETS}
    for s in args.seeds:
        for net in NETS:
            h = runs[net][s] = run(args, x_train, y_train, net, s)
            ends = restarts[1:] + [len(h["loss"])]
            rs[net][s] = [at_restart(args, h, c, e) for c, e in zip(restarts, ends)]
            for p in rs[net][s]:
                print(f"seed {s} {net:8s} restart at step {p['step']:3d}: acc {p['acc_before']:.1f} → "
                      f"{p['acc_after']:.1f} % ({p['delta_acc']:+.1f}), |ΔW|/|W| {p['update_before']:.2g} → "
                      f"{p['update_after']:.2g}, σ_B(z) {p['sigma']:.3g} (max after {p['sigma_after_max']:.3g}), "
                      f"max loss after {p['max_loss_after']:.3g}: {p['verdict']}")
    print()
    claims = claims_for(args, rs, restarts)
    print()
    pred = prediction(rs)
    figure(args, runs, rs, restarts)
    lesson.finish(args, {"runs": {net: {str(s): v for s, v in rs[net].items()} for net in NETS},
                         "restarts": restarts, "cycles": args.cycles, "after": args.after, "window": args.window,
                         "images": len(x_train), "prediction": pred,
                         "loss": {net: {str(s): h["loss"] for s, h in runs[net].items()} for net in NETS}}, claims)


if __name__ == "__main__":
    main()
