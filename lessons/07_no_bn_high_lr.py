"""Lesson 07 — without batch norm and without the scale layer, lr 0.1 breaks training.

Question
    Take the BN-free WRN (sReLU units, no final BN) and leave out the paper's ×1/T layer (T = 1).
    At the learning rate the BN nets use, 0.1, what happens in the first steps on real CIFAR-10
    images, seed after seed? And at 0.01 and 0.001? What does "diverged" look like when float32
    never produces a NaN, what exactly is "dead", and why does a dead net's loss sit where it sits?

Run
    python lessons/07_no_bn_high_lr.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run: WRN-20-1, 1-bit, the 4000 training images of the subset, batch 125,
the cosine laid out for 30 epochs, 30 steps per run, seeds 0-2 (seed: initial weights and batch
order; every run of a seed starts from the same weights and sees the same batches); 12 minutes
single-threaded (TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1) on a 2-core machine shared with
two other runs; every digit below, and of the longer look in the takeaway, the same as in the
previous full run, before the direct kernels took the stride-2 layers and the stem's weight
gradient)
    srelu T=1 lr 0.1 seed 0: loss 0: 21.9  1: 2.38e+06  2: 1.39e+13  3: 9.1e+16  4: 5.66e+19  5: 4.3e+17  ...  29: 9.96
       step 0: logit std 15.72, median |dW|/|W| 9.71, 16.17 % of the signs flipped.  end: exploded, then dead
       (exploded at 1, dead from 12), 70.9 % of unit outputs at the floor (5 of 19 units entirely; the head unit 100 %)
       end, 250 fixed images: logits' std over images 0, range over classes 12.4, 1 class(es) predicted,
       p(true class) 0.098, loss 9.92; head conv in the last 10 steps: 0.00 % signs flipped, ...,
       ‖W‖ 1.6e+19× its initial norm
    ...
    run                  seed  loss@0  max loss last loss acc last exploded dead from  floor  verdict
    srelu T=1 lr 0.1        0    21.9  5.66e+19      9.96    11.2%        1        12  70.9%  exploded, then dead
    srelu T=1 lr 0.1        1    32.6  2.75e+17      4.48    10.9%        1         6  83.4%  exploded, then dead
    srelu T=1 lr 0.1        2    16.9  3.62e+15      4.75    10.1%        1         9  83.4%  exploded, then dead
    srelu T=1 lr 0.01       0    21.9       156      3.25     8.9%     None        29  74.8%  dead
    srelu T=1 lr 0.01       1    32.6       517      2.88     9.9%     None        28  76.6%  dead
    srelu T=1 lr 0.01       2    16.9       191      2.42    10.7%     None        25  71.0%  dead
    srelu T=1 lr 0.001      0    21.9      27.9      2.29    13.7%     None      None  42.6%  at chance
    ...
    baseline2 lr 0.1        2    2.38      2.38      2.01    21.9%     None      None  49.8%  learning

    CLAIM srelu T=1 lr 0.1 explodes (tinybin.train.divergence: ...): holds in 3 of 3 seeds  (range 3.62e+15–5.66e+19)
    CLAIM srelu T=1 lr 0.1 ends dead (...); % of unit outputs at the floor: holds in 3 of 3 seeds  (mean 79.2 %, range 70.9–83.4 %)
    CLAIM srelu T=1 lr 0.1 ends with its loss above 2 × ln 10: holds in 2 of 3 seeds  (mean 6.4, range 4.48–9.96)
    CLAIM srelu T=1 lr 0.01 explodes (...): holds in 0 of 3 seeds  (max loss 156–517)
    CLAIM srelu T=1 lr 0.01 ends dead (...): holds in 3 of 3 seeds  (mean 74.1 %, range 71–76.6 %)
    CLAIM srelu T=1 lr 0.01 ends with its loss above 2 × ln 10: holds in 0 of 3 seeds  (mean 2.85, range 2.42–3.25)
    CLAIM srelu T=1 lr 0.001 ends dead (...): holds in 0 of 3 seeds  (mean 43 %, range 42.5–43.9 %)
    CLAIM baseline2 lr 0.1 neither explodes nor dies: holds in 3 of 3 seeds
    CLAIM srelu T=1 starts with a loss above 3 × ln 10 (...): holds in 3 of 3 seeds  (mean 23.8, range 16.9–32.6)
    CLAIM srelu T=1 lr 0.1: its head conv flips no sign in the last 10 steps (...): holds in 1 of 3 seeds  (0–2.03 %)
    CLAIM baseline2 lr 0.1 ends with a higher training accuracy than srelu T=1 lr 0.001: holds in 3 of 3
          seeds  (mean 10.6 points, range 8.35–12.7 points)
    CLAIM srelu T=1 lr 0.001 ends learning (training accuracy above 15 %, alive): holds in 0 of 3 seeds  (11–13.7 %)

Takeaway
    Without any normalisation the signal grows ×√2 per residual block (lesson 06): the logits
    start at a std of 16–23, the softmax is saturated and the loss starts at 16.9–32.6 instead
    of ln 10 (3 of 3 seeds), with a relative weight gradient ‖dW‖/‖W‖ of 9.5–11.6, 250–380× the
    BN net's. At lr 0.1 the first step flips 14–16 % of the 1-bit signs, and in 3 of 3 seeds
    the loss explodes from step 1 (tinybin.train.divergence's definition: above 100 × the first
    loss), reaching 3.6e15–5.7e19 without a NaN or inf in float32; a NaN check alone sees nothing.
    From step 6–12 every image gets the same logits: the net is dead, in 3 of 3 seeds.

    What "dead" measured: not every unit at its floor. At the last step 71–83 % of all unit
    outputs sit at the sReLU floor −1 (mean over the 19 units), 3–5 of the 19 units entirely,
    and the head unit, the one before the last conv, 100 % in every seed. That is enough: sReLU
    passes no gradient below −1, and a head input that no longer depends on the image makes one
    logit vector for every image (std over 250 fixed images: 0).

    Why a dead net's loss is not ln 10: a net that gives every image the same logits scores the
    cross-entropy of that one vector against the labels, ln Σ exp(l) − mean l_y. The true class
    gets p ≈ 0.09–0.10, and the loss grows with the vector's spread over classes: spread 1.4 →
    loss 2.42, 3.9 → 2.83, 8.1 → 4.26, 11.3 → 5.02, 12.4 → 9.92 (it also depends on which class
    is on top). ln 10 is the case of no spread. At lr 0.1 the last loss is above 2 × ln 10 in 2
    of 3 seeds (4.48–9.96, as in the previous full run; 1 of 3 in the one before it, before
    Winograd's weight gradient).
    The gradient of a constant prediction flattens the vector, but with the head unit at its
    floor only sign flips of the head conv can move it, and at lr 0.1 the explosion left that
    conv's latent weights at 3e15–1.6e19 × their initial norm: 0–2.0 % of its signs flip over
    the last 10 steps (none in 1 of 3 seeds). A longer look (--steps 150 --lrs 0.1 0.01
    --no-baseline --seeds 2, 11 minutes) shows where each ends: at lr 0.1 the loss stays spread
    (range 12.4 and 9.2 at step 149, loss 9.9 and 4.0; the head's weights 6e16–1.6e19×, 0–0.16 %
    flips), at lr 0.01 it flattens to ln 10 (range 0.35–0.56, loss 2.30–2.35; the head's weights
    only 13–67× their initial norm, 1.25–1.41 % flips). In these runs the level a dead net's loss
    sits at follows how far the explosion threw the head's weights (not strictly in the 30-step
    run: 3e15× ends at 4.75, 6e16× at 4.48); tinybin reads an earlier
    release's 150-step run, whose loss sat at 14, the same way (a spread vector that could no
    longer flatten; not re-measured). Seed 0 at lr 0.1 no longer drifts in the longer look (10.2
    at step 20, 9.96 at step 149, its head unit 100 % at the floor); in the full run before
    Winograd's weight gradient, its head unit sat at 98 % and its loss drifted from 5.8 at step
    10 to 2.5.

    Lowering the lr to 0.01 does not save it: nothing explodes by the definition (max loss
    156–517, under 100 × the first loss), but every seed ends dead (3 of 3, from step 25–29,
    71–77 % of outputs at the floor), its loss at 2.42–3.25, near ln 10 because its one logit
    vector is flatter (spread 1.4–4.5). "Dead" here is the library's test on the last batch;
    on 250 fixed images seed 0's logits still differ a little (std 0.046). lr 0.001 survives in
    3 of 3 seeds (43 % at the floor, 8–10 classes predicted) but in 30 steps learns little:
    11–13.7 % training accuracy, "at chance" by the library's 1.5 × chance test in 3 of 3, while
    the BN net at lr 0.1 reaches 21.9–24.4 % (ahead by 8.4–12.7 points in 3 of 3). Lesson 08
    shows the fix: the ×1/T layer.

Try next
    --steps 150                       look longer: does the dead nets' loss keep drifting, does lr 0.001 catch up?
    --lrs 0.1 0.03 0.01 0.003 0.001   a finer sweep
    --bits 32                         full-precision weights: the same story?
    --seeds 5                         more seeds for the k-of-n verdicts
"""
import numpy as np

from tinybin.models import wrn
from tinybin.ops.loss import cross_entropy
from tinybin.probes import Probe, diagnose, short_run
from tinybin.tensor import no_grad

import lesson

NEEDS_DATA = True
FIGURES = ["lr_sweep.png"]
RESULT_KEYS = ["runs", "steps", "seed_list"]


def run(args, x, y, variant, lr, seed):
    """Train a fresh WRN for args.steps steps (seed: its initial weights and its batches) and probe it."""
    temperature = 1.0 if variant == "srelu" else None
    model = wrn(depth=args.depth, width=args.width, variant=variant, bits=args.bits, temperature=temperature,
                rng=seed)
    probe = Probe(model, sample=0)           # summary numbers only, no gradient samples
    hist = short_run(model, x, y, args.steps, lr, batch_size=args.batch, seed=seed, probe=probe)
    probe.close()
    return model, hist, probe


def autopsy(model, probe, x, y, last=10):
    """What the net computes at the end, on 250 fixed training images (no augmentation): are its
    logits the same for every image, how far apart are they across classes, what loss does that
    give; and is its head still moving (sign flips and update size of the head conv, the last
    layer with weights, over the last `last` steps)."""
    xb, yb = np.asarray(x[:250], dtype=model.dtype), np.asarray(y[:250])
    with no_grad():
        logits = model(xb)
        loss = float(cross_entropy(logits, yb).data)
    L = logits.data.astype(np.float64)
    p = np.exp(L - L.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    recs = probe.records[-last:]
    units = probe.records[-1]["units"]
    head = [r["layers"]["head.conv"] for r in recs]
    return {"loss_fixed": loss, "logit_std_over_images": float(L.std(axis=0).max()),
            "logit_range_over_classes": float(np.ptp(L.mean(axis=0))), "classes_predicted": int(np.unique(L.argmax(1)).size),
            "p_true": float(p[np.arange(len(yb)), yb].mean()), "p_max": float(p.max(axis=1).mean()),
            "floor_mean": float(np.mean([u["floor"] for u in units.values()])),
            "units_all_floor": int(sum(u["floor"] >= 1.0 for u in units.values())), "units": len(units),
            "head_unit_floor": float(units["head.unit"]["floor"]),
            "head_flips_last": float(sum(h.get("flip", 0.0) for h in head)),
            "head_update_last": float(np.mean([h["update_ratio"] for h in head])),
            "head_w_growth": float(recs[-1]["layers"]["head.conv"]["w_norm"] / probe.records[0]["layers"]["head.conv"]["w_norm"])}


def one(args, x, y, variant, lr, seed):
    model, hist, probe = run(args, x, y, variant, lr, seed)
    d = diagnose(hist)
    d.update(autopsy(model, probe, x, y), variant=variant, lr=lr, seed=seed,
             logit_std0=probe.records[0]["logit_std"], median_grad_ratio0=probe.median_grad_ratio(0),
             flip0=probe.records[0]["flip_ratio"], seconds_per_step=hist["seconds_per_step"],
             loss=hist["loss"], acc=hist["acc"], dead_end=bool(hist["same_output"][-1]))
    return d


def show(label, d, steps):
    shown = [s for s in (0, 1, 2, 3, 4, 5, 10, 20, 50, 100) if s < steps] + [steps - 1]
    print(f"{label} seed {d['seed']}: loss " + "  ".join(f"{s}: {d['loss'][s]:.3g}" for s in dict.fromkeys(shown)))
    print(f"   step 0: logit std {d['logit_std0']:.2f}, median |dW|/|W| {d['median_grad_ratio0']:.3g}, "
          f"{100 * d['flip0']:.2f} % of the signs flipped.  end: {d['verdict']} (exploded at {d['exploded_at']}, "
          f"dead from {d['dead_from']}), {100 * d['floor_mean']:.1f} % of unit outputs at the floor "
          f"({d['units_all_floor']} of {d['units']} units entirely; the head unit {100 * d['head_unit_floor']:.0f} %)")
    print(f"   end, 250 fixed images: logits' std over images {d['logit_std_over_images']:.2g}, range over classes "
          f"{d['logit_range_over_classes']:.3g}, {d['classes_predicted']} class(es) predicted, p(true class) "
          f"{d['p_true']:.3f}, loss {d['loss_fixed']:.3g}; head conv in the last 10 steps: "
          f"{100 * d['head_flips_last']:.2f} % signs flipped, |ΔW|/|W| {d['head_update_last']:.2g} a step, "
          f"‖W‖ {d['head_w_growth']:.3g}× its initial norm")


def claims_for(runs, plan, seeds):
    """The lesson's comparisons, each over the seeds; mechanism ones are asserted in --quick."""
    out = []
    for (variant, lr), label in plan.items():
        r = runs[label]
        if variant == "srelu":
            out.append(lesson.claim(f"{label} explodes (tinybin.train.divergence: loss > 100 × max(first loss, ln 10))",
                                    {s: r[s]["exploded_at"] is not None for s in seeds},
                                    values={s: r[s]["max_loss"] for s in seeds}, assert_in_quick=lr >= 0.1))
            out.append(lesson.claim(f"{label} ends dead (every image the same logits); % of unit outputs at the floor",
                                    {s: r[s]["dead_end"] for s in seeds},
                                    values={s: 100 * r[s]["floor_mean"] for s in seeds}, unit=" %"))
            out.append(lesson.claim(f"{label} ends with its loss above 2 × ln 10",
                                    {s: r[s]["final_loss"] > 2 * np.log(10) for s in seeds},
                                    values={s: r[s]["final_loss"] for s in seeds}))
        else:
            out.append(lesson.claim(f"{label} neither explodes nor dies",
                                    {s: r[s]["verdict"] in ("learning", "at chance") for s in seeds},
                                    values={s: r[s]["max_loss"] for s in seeds}, assert_in_quick=True))
    first = next(label for (v, _), label in plan.items() if v == "srelu")
    out.append(lesson.claim("srelu T=1 starts with a loss above 3 × ln 10 (the logits of an unnormalised net are large)",
                            {s: runs[first][s]["loss0"] > 3 * np.log(10) for s in seeds},
                            values={s: runs[first][s]["loss0"] for s in seeds}, assert_in_quick=True))
    r = runs[first]
    out.append(lesson.claim(f"{first}: its head conv flips no sign in the last 10 steps (the logits are frozen)",
                            {s: r[s]["head_flips_last"] == 0 for s in seeds},
                            values={s: 100 * r[s]["head_flips_last"] for s in seeds}, unit=" %"))
    slow = [label for (v, lr), label in plan.items() if v == "srelu" and lr < 0.005]
    if slow and ("baseline2", 0.1) in plan:
        a, b = runs[plan[("baseline2", 0.1)]], runs[slow[0]]
        out.append(lesson.claim(f"baseline2 lr 0.1 ends with a higher training accuracy than {slow[0]}",
                                {s: a[s]["acc_last"] > b[s]["acc_last"] for s in seeds},
                                values={s: 100 * (a[s]["acc_last"] - b[s]["acc_last"]) for s in seeds}, unit=" points"))
        out.append(lesson.claim(f"{slow[0]} ends learning (training accuracy above 15 %, alive)",
                                {s: b[s]["verdict"] == "learning" for s in seeds},
                                values={s: 100 * b[s]["acc_last"] for s in seeds}, unit=" %"))
    return out


def figure(args, runs):
    plt = lesson.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.9), layout="constrained")
    for i, (label, per_seed) in enumerate(runs.items()):
        for j, d in enumerate(per_seed.values()):
            kw = dict(lw=0.8, color=f"C{i}", alpha=0.8, label=label if j == 0 else None)
            axes[0].semilogy(d["loss"], **kw)
            k = max(1, min(10, len(d["acc"]) // 3))
            axes[1].plot(np.arange(k - 1, len(d["acc"])), 100 * np.convolve(d["acc"], np.ones(k) / k, "valid"), **kw)
    axes[0].axhline(np.log(10), color="k", ls=":", lw=1, label="ln 10")
    top = max(d["max_loss"] for per_seed in runs.values() for d in per_seed.values())
    nan = any(d["non_finite"] for per_seed in runs.values() for d in per_seed.values())
    axes[0].set(xlabel="step", ylabel="training loss (log)",
                title=f"loss: up to {top:.1e}, {'with' if nan else 'without'} a NaN or inf in float32")
    axes[1].axhline(10, color="k", ls=":", lw=1, label="chance")
    axes[1].set(xlabel="step", ylabel=f"accuracy % (mean of {k} batches)", title="training accuracy")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=7)
    fig.suptitle(f"BN-free WRN-{args.depth}-{args.width} ({args.bits}-bit) without the scale layer (T = 1), real "
                 f"CIFAR-10; {len(args.seeds)} seeds, one line each", fontsize=10)
    lesson.save_figure(fig, args, FIGURES[0])


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.01, 0.001], help="learning rates of the sweep")
    parser.add_argument("--steps", type=int, default=30, help="SGD steps per run")
    lesson.model_flags(parser)
    lesson.seeds_flag(parser, full=3, quick=2)
    parser.add_argument("--no-baseline", action="store_true", help="skip the BN baseline run at lr 0.1")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.lrs = min(args.steps, 10), [max(args.lrs)]
    (x_train, y_train), _ = lesson.load_cifar10(args)
    plan = {("srelu", lr): f"srelu T=1 lr {lr:g}" for lr in args.lrs}
    if not args.no_baseline:
        plan[("baseline2", 0.1)] = "baseline2 lr 0.1"
    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch {args.batch}, "
          f"{args.steps} steps per run, seeds {args.seeds}")
    runs = {label: {} for label in plan.values()}
    for s in args.seeds:
        for (variant, lr), label in plan.items():
            runs[label][s] = d = one(args, x_train, y_train, variant, lr, s)
            show(label, d, args.steps)

    print(f"\n{'run':20s} {'seed':>4s} {'loss@0':>7s} {'max loss':>9s} {'last loss':>9s} {'acc last':>8s} "
          f"{'exploded':>8s} {'dead from':>9s} {'floor':>6s}  verdict")
    for label, per_seed in runs.items():
        for s, d in per_seed.items():
            print(f"{label:20s} {s:4d} {d['loss0']:7.3g} {d['max_loss']:9.3g} {d['final_loss']:9.3g} "
                  f"{100 * d['acc_last']:7.1f}% {str(d['exploded_at']):>8s} {str(d['dead_from']):>9s} "
                  f"{100 * d['floor_mean']:5.1f}%  {d['verdict']}")
    print(f"(acc last: mean training accuracy of the last {min(30, args.steps)} steps, chance 10 %; exploded: first "
          "step with loss > 100 × max(first loss, ln 10); dead from: the step from which every image gets the same "
          "logits; floor: unit outputs at the sReLU floor −1 (ReLU: 0), mean over the 19 units, at the last step)\n")
    claims = claims_for(runs, plan, args.seeds)
    figure(args, runs)
    lesson.finish(args, {"runs": {label: {str(s): d for s, d in per_seed.items()} for label, per_seed in runs.items()},
                         "steps": args.steps}, claims)


if __name__ == "__main__":
    main()
