"""Lesson 08 — the final scale layer: what one constant 1/T before the pool replaces.

Question
    The paper replaces the final batch norm of a BN-free WRN by a constant multiply, z/T, on the
    head conv's output z. Which T lets the net train at lr 0.1, and why do the others fail? Is
    "scale before the pool" a softmax temperature, and is T the same as lr/T? What does the final
    BN do to z and to dL/dz — divide by σ_B(z), subtract μ_B(z) — and which of the two does the
    constant 1/T stand in for?

Run
    python lessons/08_scale_layer.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive;
    --jobs 2 trains two runs at a time in worker processes, each with serial kernels)

Expected output (a full run: WRN-20-1, 1-bit, the 4000 training images of the subset, batch 125,
cosine schedule laid out for 30 epochs, seed 0; 30 steps per run, 320 for T = 30, T = 100 and the
final BN, 80 for the other heads of part 5; single-threaded: TINYBIN_PARALLEL=0
OPENBLAS_NUM_THREADS=1; condensed)
    1. the first 125 training images, same weights: logits of the T=30 net vs (logits of the T=1 net)/30:
       max relative difference 5.8e-07; cross-entropy 2.373841 vs 2.373841 with temperature 30 on the T=1 logits
       T=1   at init: logit std  15.27, mean top probability 0.917, 87 % of the batch predicted as one class
       T=30  at init: logit std   0.51, mean top probability 0.182, 87 % of the batch predicted as one class
    2. dL/dz at init, same batch and weights (summed-loss convention), autograd against the closed form
       ×1/T, T=1    std dL/dz    0.0062 = chain 1/(T·H·W)    0.0156 × softmax term std(p − y) 0.397  (2.0e-07)
       ×1/T, T=30   std dL/dz  0.000157 = chain 1/(T·H·W)  0.000521 × softmax term std(p − y) 0.302  (1.9e-07)
       ×1/T, T=100  std dL/dz  4.69e-05 = chain 1/(T·H·W)  0.000156 × softmax term std(p − y) 0.300  (1.3e-07)
       T=1 → T=30: std dL/dz ×1/39.5 = chain ×1/30 × softmax term ×1/1.32
       final BN   std dL/dz  0.000294 ≈ median 1/σ_B 0.0637 × std of (g − mean g − x̂·mean(g·x̂)) 0.00467  (8.8e-07)
                  std g = (p − y)/(H·W): 0.00471; after removing its batch mean per channel 0.00468; after the σ path too 0.00467
       σ_B(z) at init, median over the 10 channels, 20 seeds: median 15.5, range 6.8–26.7
    3. T at lr 0.1, the same initial weights and batches (30 steps; acc: last 30 of them)
       run                 loss@0  max loss    acc logit std dL/dz std |dW|/|W| |ΔW|/|W|  flips@0  verdict
       srelu T=1             21.9  1.03e+18  10.7%      15.7   0.00639     9.71    0.971  16.171%  exploded, then dead, stopped at 14
       srelu T=10            3.25      5.64   9.5%      1.57  0.000502    0.562   0.0562   1.428%  at chance
       srelu T=30            2.45      2.52  12.6%     0.524  0.000158   0.0937  0.00937   0.244%  at chance
       srelu T=100           2.32      2.35  13.3%     0.157   4.7e-05   0.0147  0.00147   0.038%  at chance
       final-bn (final BN)   2.36      2.36  19.3%     0.282  0.000286   0.0632  0.00632   0.148%  learning
       after 80 steps (acc: last 30): T=30 16.6% learning; T=100 16.3% learning; final BN 21.5% learning
       after 320 steps (acc: last 30): T=30 28.9% learning; T=100 25.6% learning; final BN 32.8% learning
    4. T = 1 at lr 0.1/T against the T net at lr 0.1 (first 30 steps)
       T=30, lr 0.1          2.45      2.52  12.6%     0.524  0.000158   0.0937  0.00937   0.244%  at chance
       T=1, lr/30            21.9      35.2  10.5%      15.7   0.00639     9.71   0.0324   0.915%  at chance
       T=1, lr/30, wd×30     21.9      35.2  10.3%      15.7   0.00639     9.71   0.0324   0.915%  at chance
    5. five heads on the same weights and batches, lr 0.1, 80 steps, T = 30
       head                   steps      loss    acc logit std dL/dz std  |dW|/|W|   σ_B(z) |μ_B(z)|  verdict
       final BN                0-20      2.15  18.7%      0.58  5.86e-05    0.0157      374      392
       final BN               40-80      2.05  21.6%     0.721   2.4e-06   0.00718 3.18e+03 4.02e+03  learning
       ×1/σ_B only             0-20      2.44  12.1%     0.681   0.00173    0.0578     2.88     1.17
       ×1/σ_B only            40-80         3  10.3%      1.24   0.00125    0.0334     5.79     4.09  at chance
       mean-only               0-20  1.26e+12  10.2%  1.44e+12   0.00546     0.173 3.21e+08 6.51e+07
       mean-only              40-80  — stopped at step 27: exploded, then dead
       mean-only, ×1/T         0-20      2.21  17.8%     0.521  0.000154    0.0381     21.5     23.9
       mean-only, ×1/T        40-80      2.17  18.2%     0.657  0.000153    0.0169     22.1     13.4  learning
       ×1/T alone              0-20       2.3  11.5%      0.19  0.000156   0.00875      4.9     2.62
       ×1/T alone             40-80      2.18  16.6%     0.616  0.000154    0.0221     14.8      4.8  learning
       final BN's σ_B(z) (median over channels) at steps 0 / 20 / 160 / 319: 16.2 / 1.76e+03 / 244 / 71;
       all channels, all steps: 12.4–7.8e+03
    (|dW|/|W|: median over the 20 convs; |ΔW|/|W|: the first update; flips@0: weight signs it flipped;
    a run that exploded and then gave every image the same logits for 10 steps is stopped there.
    The figures' legends carry each run's verdict after its first 30 steps.)

Takeaway
    ×1/T before the pool is a softmax temperature: GAP is linear, so the logits are those of the
    T = 1 net divided by T (to 6e-7) and the loss is the same. The winning class does not change
    (87 % of the batch still goes to one class at T = 30); only how sure the softmax is (top
    probability 0.92 → 0.18).

    Why T is not lr/T. dL/dz = (1/T)(softmax(z̄/T) − y)/(H·W) has two factors that both change
    with T: the chain rule's 1/(T·H·W), ×1/30 from T = 1 to 30, and the softmax term std(p − y),
    0.40 when the softmax is saturated (per image about +0.9 on the predicted class and −1 on the
    label) and 0.30 when it is soft (+0.1 everywhere, −0.9 on the label): ×1/39.5 in all. Below
    z the two nets run the same weights, yet |dW|/|W| falls ×1/104 (9.71 → 0.0937): the soft
    term, nearly the same for every image, adds up less across the batch than a saturated softmax
    that pushes most images toward one class. lr/30 instead shrinks every step by exactly 30:
    the first update of T = 1 at lr/30 is 0.0324 of the weights against 0.00937 for T = 30 — 3.5×
    further — it flips 0.9 % of the signs against 0.24 %, and its forward stays saturated (loss
    21.9, 35 at its worst). Weight decay ×30, which gives it the T = 30 run's lr·wd, changes
    nothing in the first step and little in 30 (the same loss, 10.3 % against 10.5 %): the step
    size, not the decay, is the difference.

    Which T. T = 1 explodes (loss 1.0e18) and is dead from step 4 (stopped at 14); T = 10 does not
    explode but stays at chance for 30 steps. T = 30 learns: 12.6 % over its first 30 steps,
    16.6 % by step 80, 28.9 % by step 320. T = 100 is colder — relative weight gradients 6× below
    T = 30's (0.0147 against 0.0937) — yet here it keeps pace: 16.3 % by step 80, 25.6 % by step
    320. Which of the two starts first changes with the seed (`--seed 1` and `--seed 2`, the
    other parts shortened: at step 80 T = 30 17.6 % and 14.8 %, T = 100 16.8 % and 19.4 %), and
    with the float32 rounding (a run with other rounding had T = 100 still at chance at step 80).
    So the paper's T ≈ 30-100 holds in this narrow net, and T = 10 and below do not train. The
    final BN leads at step 80 in two of the three seeds (21.5 %, 24.2 %, 18.8 %) and at step 320
    (32.8 %).

    What the final BN does that 1/T replaces. Its backward is
    (1/σ_B)(g − mean g − x̂·mean(g·x̂)); at init the two mean terms hardly change g (std 0.00471
    → 0.00467), so it is a division by σ_B(z) ≈ 15.5 (20 seeds: 6.8–26.7) — a "T" of 16, where
    T = 10 fails. But σ_B does not stay there: as final-bn trains, z grows and the BN follows it,
    σ_B(z) 16 → 1760 by step 20, then down to 244 by step 160 and 71 by step 319 (all channels
    and steps: 12–7800): far outside any fixed T early on, inside the paper's 30-100 later.
    Part 5 separates the two operations on the same weights and batches. Dividing alone (×1/σ_B,
    σ_B held constant in the backward) stays finite but does not learn: under it z shrinks (σ_B
    3-6), the loss climbs to 3.0 in steps 40-80 and it ends at chance (10.3 %). Centring alone
    (mean-only) explodes at once (loss 1e12 in steps 0-20) and is dead by step 27: it keeps z's
    scale, like T = 1. ×1/T alone learns slowly (11.5 % in steps 0-20, 16.6 % in 40-80),
    centring then ×1/T faster (17.8 %, 18.2 %), the final BN fastest in this run (18.7 %,
    21.6 %). Over three seeds the failures are the same every time — mean-only explodes,
    ×1/σ_B stays at chance — but the order of the three that learn is not: in steps 40-80 the
    final BN gives 21.6 / 23.7 / 18.9 %, centring then ×1/T 18.2 / 21.4 / 21.6 %, ×1/T alone
    16.6 / 17.4 / 13.7 % (at chance in seed 2). So the division is what keeps a run alive (the
    one head without it explodes in every seed); a fixed 1/T followed by the centring trains
    about as well as a σ_B that follows z (means 20.4 % against 21.4 %, each ahead in some
    seed); and the centring adds 1.6–7.9 points over ×1/T alone in every seed: it removes the
    part of z that every image shares (87 % of the batch in one class at init), which ×1/T
    leaves in. That is the paper's variant 6: ×1/T, then mean-only BN (lesson 10: it trains at
    lr 0.1 and leads srelu and elu early).

Try next
    --temperatures 3 20 40 60      more T: where between 10 and 100 does it start to train?
    --settle-steps 960             the whole 30-epoch cosine for T = 30, T = 100 and the final BN
    --long-steps 320               the heads of part 5 for longer
    --seed 1                       another initialisation and batch order
    --bits 32                      the authors use T = 80 for 32-bit weights
    --lr-over-t 10 30              more "lr/T instead of T" runs
    --baseline                     add the BN net (baseline2) at lr 0.1
"""
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from tinybin.models import wrn
from tinybin.train.divergence import diagnose

import lesson

NEEDS_DATA = True
FIGURES = ["temperature_sweep.png", "t_vs_lr.png", "init_gradients.png"]
RESULT_KEYS = ["init", "sweep", "lr_over_t", "steps"]
STYLE = {1: ("tab:red", ":"), 10: ("tab:orange", "-."), 30: ("tab:blue", "-"), 100: ("tab:green", "--")}


def build(args, temperature, seed):
    """The srelu WRN with ×1/T before the pool; for one seed, the same latent weights whatever T."""
    return wrn(depth=args.depth, width=args.width, variant="srelu", bits=args.bits, temperature=temperature, rng=seed)


def softmax(logits):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def median_grad_ratio(model):
    return float(np.median([np.linalg.norm(c.weight.grad) / np.linalg.norm(c.weight.data) for _, c in model.convs()]))


def at_init(args, xb, yb, temperature, seed):
    """One batch at init through the T net: its logits; dL/dz from autograd beside the closed form
    (1/T)(p − y)/(H·W) (summed-loss convention: the mean-loss gradient × N); the softmax term
    p − y, its batch mean ‖mean_n (p − y)‖; and |dW|/|W| (median over the 20 convs) from the
    upstream gradient (p − y)/N, and again with its batch mean removed."""
    out, n = {}, len(yb)
    for centred in (False, True):
        model = build(args, temperature, seed)
        kept = {}
        remove = model.head.conv.register_forward_hook(lambda m, inp, o: kept.setdefault("z", o.retain_grad()))
        logits = model(xb)
        remove()
        p = softmax(logits.data.astype(np.float64))
        onehot = np.eye(p.shape[1])[yb]
        pmy = p - onehot
        upstream = pmy - pmy.mean(axis=0) if centred else pmy
        logits.backward((upstream / n).astype(logits.data.dtype))
        if centred:
            out["grad_ratio_centred"] = median_grad_ratio(model)
            continue
        z, dz = kept["z"].data, kept["z"].grad.astype(np.float64) * n
        hw = z.shape[1] * z.shape[2]
        closed = np.broadcast_to(pmy[:, None, None, :] / (hw * temperature), dz.shape)
        share = np.bincount(p.argmax(1), minlength=p.shape[1]).max() / n
        out.update(logits=logits.data.astype(np.float64), std_dz=float(dz.std()), chain=1.0 / (temperature * hw),
                   softmax_term=float(pmy.std()), closed_form_error=float(np.abs(closed - dz).max() / np.abs(dz).max()),
                   top_prob=float(p.max(1).mean()), one_class=float(share),
                   batch_mean=float(np.linalg.norm(pmy.mean(axis=0))),
                   batch_mean_p=float(np.linalg.norm(p.mean(axis=0) - 1.0 / p.shape[1])),
                   batch_mean_y=float(np.linalg.norm(onehot.mean(axis=0) - 1.0 / p.shape[1])),
                   grad_ratio=median_grad_ratio(model))
    return out


def train(args, x, y, seed, steps, lr, temperature, extra_decay):
    """One run of `steps` SGD steps (stopped early once dead); diagnose() of its first
    min(steps, args.lr_steps) steps under "first", and the step-0 numbers of the probe."""
    hist, probe = lesson.probed_run(build(args, temperature, seed), x, y, steps, lr, args.batch, seed, extra_decay)
    r0 = probe.records[0]
    d = diagnose(hist)
    n = min(steps, args.lr_steps)
    d.update(first=diagnose({k: v[:n] for k, v in hist.items()}), mean_loss_first=float(np.mean(hist["loss"][:n])),
             stopped_at=len(hist["loss"]) if len(hist["loss"]) < steps else None, steps=steps,
             loss=hist["loss"], acc=hist["acc"], dz_std0=r0["grad"]["z"]["std"], logit_std0=r0["logit_std"],
             grad_ratio0=float(np.median([v["grad_ratio"] for v in r0["layers"].values()])),
             update_ratio0=float(np.median([v["update_ratio"] for v in r0["layers"].values()])), flip0=r0["flip_ratio"])
    return d


_DATA = {}


def _job(args, job):
    """One planned run, in this process or in a worker (which loads the images once)."""
    if "x" not in _DATA:
        (_DATA["x"], _DATA["y"]), _ = lesson.load_cifar10(args, quiet=True)
    seed, _, spec = job
    return train(args, _DATA["x"], _DATA["y"], seed, *spec)


def run_all(args, jobs):
    """{(seed, key): train(...)} for every (seed, key, (steps, lr, T, extra decay)); with --jobs N > 1
    in N worker processes (serial kernels each), longest runs first."""
    if args.jobs <= 1:
        return {(s, k): _job(args, (s, k, spec)) for s, k, spec in jobs}
    os.environ["TINYBIN_PARALLEL"] = "0"         # N processes already share the cores
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {(s, k): pool.submit(_job, args, (s, k, spec)) for s, k, spec in sorted(jobs, key=lambda j: -j[2][0])}
        return {(s, k): futures[(s, k)].result() for s, k, _ in jobs}


def main():
    parser = lesson.parser(__doc__, __file__)
    lesson.seeds_flag(parser, full=3, quick=2)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1, 10, 30, 100], help="values of T")
    parser.add_argument("--lr-over-t", type=float, default=30,
                        help="T whose net at lr 0.1 is set against T = 1 at lr 0.1/T (and weight decay ×T)")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine)")
    parser.add_argument("--steps", type=int, default=50, help="SGD steps of every run of the sweep over T")
    parser.add_argument("--lr-steps", type=int, default=20, help="steps of the lr/T runs (and of their comparison)")
    parser.add_argument("--decay-too", action="store_true",
                        help="also T = 1 at lr/T with weight decay ×T (the same lr·wd as the T net)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel (worker processes)")
    lesson.model_flags(parser)
    args = parser.parse_args()
    if args.quick:
        args.steps = args.lr_steps = min(args.steps, 8)
        args.temperatures = [1, 30]
    args.lr_steps = min(args.lr_steps, args.steps)
    temps = sorted(set(args.temperatures) | {1.0, args.lr_over_t})
    init_temps = sorted(set(temps) | {100.0})
    tl = args.lr_over_t
    (x_train, y_train), _ = lesson.load_cifar10(args)
    print(f"srelu WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch "
          f"{args.batch}, lr {args.lr:g}, seeds {args.seeds}; {args.steps} steps for every T, {args.lr_steps} for "
          "the lr/T runs")
    seeds = args.seeds
    claims = []

    # ----- 1. scale before the pool = softmax temperature; 2. dL/dz at init ----------------------
    init = {}
    for s in seeds:
        idx = np.random.default_rng(s).choice(len(x_train), args.batch, replace=False)
        xb, yb = x_train[idx].astype(np.float32), y_train[idx]
        init[s] = {T: at_init(args, xb, yb, T, s) for T in init_temps}
    per = lambda key, T: {s: init[s][T][key] for s in seeds}
    rel = {s: float(np.abs(init[s][tl]["logits"] - init[s][1.0]["logits"] / tl).max()
                    / np.abs(init[s][tl]["logits"]).max()) for s in seeds}
    print(f"\n1. one batch per seed at init, the same weights: logits of the T={tl:g} net against (logits of the T=1 "
          f"net)/{tl:g}: max relative difference {lesson.cell(rel.values(), '.1e')}")
    claims.append(lesson.claim(f"the T={tl:g} net's logits are the T=1 net's logits divided by {tl:g} (to 1e-5): "
                               "×1/T before the pool is a softmax temperature", {s: rel[s] < 1e-5 for s in seeds},
                               rel, assert_in_quick=True))
    print(f"   {'T':>5s} {'logit std':>20s} {'top probability':>20s} {'share in one class':>20s}")
    for T in init_temps:
        print(f"   {T:5g} {lesson.cell(np.std(init[s][T]['logits']) for s in seeds):>20s} "
              f"{lesson.cell(per('top_prob', T).values()):>20s} {lesson.cell(per('one_class', T).values()):>20s}")
    claims.append(lesson.claim("a higher T is a softer (hotter) softmax: the mean top probability falls from T=1 to "
                               f"T={tl:g} to T=100", {s: init[s][1.0]["top_prob"] > init[s][tl]["top_prob"] >
                                                      init[s][100.0]["top_prob"] for s in seeds},
                               per("top_prob", tl), unit=f" at T={tl:g}", assert_in_quick=True))

    print("\n2. dL/dz at init = chain 1/(T·H·W) × softmax term (p − y); ‖mean over the batch of (p − y)‖ = "
          "‖(mean p − 1/10) − (mean y − 1/10)‖; |dW|/|W|: median over the 20 convs, from (p − y) and from (p − y) "
          "with its batch mean removed. Mean [range] over seeds")
    print(f"   {'T':>5s} {'std dL/dz':>26s} {'std(p − y)':>20s} {'‖mean_n(p − y)‖':>20s} {'‖mean p − 1/10‖':>20s} "
          f"{'|dW|/|W|':>24s} {'|dW|/|W| centred':>24s}")
    for T in init_temps:
        print(f"   {T:5g} {lesson.cell(per('std_dz', T).values()):>26s} {lesson.cell(per('softmax_term', T).values()):>20s} "
              f"{lesson.cell(per('batch_mean', T).values()):>20s} {lesson.cell(per('batch_mean_p', T).values()):>20s} "
              f"{lesson.cell(per('grad_ratio', T).values()):>24s} {lesson.cell(per('grad_ratio_centred', T).values()):>24s}")
    print(f"   ‖mean y − 1/10‖ (the batch's label mix, the same for every T): "
          f"{lesson.cell(per('batch_mean_y', 1.0).values())}")
    err = {s: max(init[s][T]["closed_form_error"] for T in init_temps) for s in seeds}
    claims.append(lesson.claim("dL/dz = (1/T)·(softmax − onehot)/(H·W): the closed form matches autograd (to 1e-4, "
                               "every T)", {s: err[s] < 1e-4 for s in seeds}, err, assert_in_quick=True))
    fall = lambda key, a, b: {s: init[s][a][key] / init[s][b][key] for s in seeds}
    for a, b in ((1.0, tl), (tl, 100.0)):
        fw, fz = fall("grad_ratio", a, b), fall("std_dz", a, b)
        print(f"   T={a:g} → T={b:g}: std dL/dz ÷{lesson.cell(fz.values())}; |dW|/|W| ÷{lesson.cell(fw.values())}; with the batch "
              f"mean of (p − y) removed ÷{lesson.cell(fall('grad_ratio_centred', a, b).values())}; ‖mean_n(p − y)‖ "
              f"÷{lesson.cell(fall('batch_mean', a, b).values())}")
        claims.append(lesson.claim(f"from T={a:g} to T={b:g}, |dW|/|W| at init falls more than std dL/dz",
                                   {s: fw[s] > fz[s] for s in seeds}, {s: fw[s] / fz[s] for s in seeds},
                                   unit="× (ratio of the two falls)"))
        fc = fall("grad_ratio_centred", a, b)
        claims.append(lesson.claim(f"from T={a:g} to T={b:g}, with the batch mean of (p − y) removed, |dW|/|W| falls "
                                   "less than with it", {s: fc[s] < fw[s] for s in seeds},
                                   {s: fc[s] / fz[s] for s in seeds}, unit="× the fall of std dL/dz"))
        claims.append(lesson.claim(f"from T={a:g} to T={b:g}, the batch mean ‖mean_n(p − y)‖ shrinks",
                                   {s: init[s][b]["batch_mean"] < init[s][a]["batch_mean"] for s in seeds},
                                   fall("batch_mean", a, b), unit="× (fall)"))

    # ----- 3. the sweep over T, and 4. T against lr/T: every run on every seed ------------------
    plan = {f"T={T:g}": (args.steps, args.lr, T, 0.0) for T in temps}
    plan[f"T=1, lr/{tl:g}"] = (args.lr_steps, args.lr / tl, 1.0, 0.0)
    if args.decay_too:
        plan[f"T=1, lr/{tl:g}, wd×{tl:g}"] = (args.lr_steps, args.lr / tl, 1.0, 5e-4 * (tl - 1))
    done = run_all(args, [(s, k, spec) for s in seeds for k, spec in plan.items()])
    runs = {k: [done[(s, k)] for s in seeds] for k in plan}
    w = min(30, args.steps)
    print(f"\n3. T at lr {args.lr:g}, the same initial weights and batches per seed, {args.steps} steps each; "
          f"acc: training accuracy of the last {w} steps (chance 10 %); mean [range] over {len(seeds)} seeds")
    print(f"   {'run':22s} {'max loss':>24s} {'acc %':>20s} {'|ΔW|/|W| step 0':>24s} {'flips@0 %':>22s}  verdicts")
    verdicts = lambda rs: ", ".join(f"{v} {sum(r['verdict'] == v for r in rs)}/{len(rs)}"
                                    for v in dict.fromkeys(r["verdict"] for r in rs))
    for k, rs in runs.items():
        print(f"   {k:22s} {lesson.cell(r['max_loss'] for r in rs):>24s} {lesson.cell(100 * r['acc_last'] for r in rs):>20s} "
              f"{lesson.cell(r['update_ratio0'] for r in rs):>24s} {lesson.cell(100 * r['flip0'] for r in rs):>22s}  "
              f"{verdicts(rs)}" + (f" (stopped at {lesson.cell([r['stopped_at'] or r['steps'] for r in rs], '.0f')})"
                                   if any(r["stopped_at"] for r in rs) else ""))
    by = lambda k: {s: done[(s, k)] for s in seeds}
    claims.append(lesson.claim(f"srelu T=1 at lr {args.lr:g} explodes (tinybin.train.divergence)",
                               {s: r["exploded_at"] is not None for s, r in by("T=1").items()},
                               {s: r["max_loss"] for s, r in by("T=1").items()}, unit=" max loss",
                               assert_in_quick=True))
    for T in temps:
        if T > 1:
            claims.append(lesson.claim(f"T={T:g} is learning after {args.steps} steps (acc of the last {w} > 15 %)",
                                       {s: r["verdict"] == "learning" for s, r in by(f"T={T:g}").items()},
                                       {s: 100 * r["acc_last"] for s, r in by(f"T={T:g}").items()}, unit=" %"))
    for a, b in ((10.0, 30.0), (30.0, 100.0)):
        if a in temps and b in temps:
            A, B = by(f"T={a:g}"), by(f"T={b:g}")
            claims.append(lesson.claim(f"T={a:g} is ahead of T={b:g} after {args.steps} steps (acc of the last {w})",
                                       {s: A[s]["acc_last"] > B[s]["acc_last"] for s in seeds},
                                       {s: 100 * (A[s]["acc_last"] - B[s]["acc_last"]) for s in seeds},
                                       unit=" points"))

    print(f"\n4. T = 1 at lr {args.lr:g}/{tl:g} against T = {tl:g} at lr {args.lr:g}, first {args.lr_steps} steps "
          "(weight decay × lr shrinks with lr, so also T = 1 at lr/T with weight decay ×T)")
    print(f"   {'run':22s} {'mean loss':>24s} {'acc %':>20s} {'|ΔW|/|W| step 0':>24s} {'flips@0 %':>22s}")
    lr_keys = [f"T={tl:g}"] + [k for k in plan if k.startswith("T=1, lr/")]
    for k in lr_keys:
        rs = runs[k]
        print(f"   {k:22s} {lesson.cell(r['mean_loss_first'] for r in rs):>24s} "
              f"{lesson.cell(100 * r['first']['acc_last'] for r in rs):>20s} "
              f"{lesson.cell(r['update_ratio0'] for r in rs):>24s} {lesson.cell(100 * r['flip0'] for r in rs):>22s}")
    hot, slow = by(f"T={tl:g}"), by(f"T=1, lr/{tl:g}")
    claims.append(lesson.claim(f"the first update of T=1 at lr/{tl:g} is larger than that of T={tl:g} at lr {args.lr:g}",
                               {s: slow[s]["update_ratio0"] > hot[s]["update_ratio0"] for s in seeds},
                               {s: slow[s]["update_ratio0"] / hot[s]["update_ratio0"] for s in seeds}, unit="×"))
    for k in lr_keys[1:]:
        o = by(k)
        claims.append(lesson.claim(f"{k} has a higher mean loss than T={tl:g} at lr {args.lr:g} over the first "
                                   f"{args.lr_steps} steps", {s: o[s]["mean_loss_first"] > hot[s]["mean_loss_first"]
                                                              for s in seeds},
                                   {s: o[s]["mean_loss_first"] / hot[s]["mean_loss_first"] for s in seeds}, unit="×"))

    # ----- figures -----------------------------------------------------------------------------
    title = (f"srelu WRN-{args.depth}-{args.width} ({args.bits}-bit), lr {args.lr:g}, {len(seeds)} seeds (thick: seed "
             f"{seeds[0]}), {args.steps} steps per T")
    groups = {f"T={T:g}": (runs[f"T={T:g}"], *STYLE.get(int(T), ("k", "-"))) for T in temps}
    lesson.save_figure(lesson.runs_over_seeds_figure(groups, title), args, FIGURES[0])
    groups = {f"T={tl:g}, lr {args.lr:g}": ([{**r, "loss": r["loss"][:args.lr_steps], "acc": r["acc"][:args.lr_steps]}
                                            for r in runs[f"T={tl:g}"]], "tab:blue", "-")}
    for k, (c, ls) in zip(lr_keys[1:], (("tab:red", "--"), ("tab:purple", ":"))):
        groups[k] = (runs[k], c, ls)
    lesson.save_figure(lesson.runs_over_seeds_figure(groups, title.replace(f"{args.steps} steps per T", f"first {args.lr_steps} steps")
                                   + ": temperature T against learning rate / T"), args, FIGURES[1])
    fig, axes = lesson.pyplot().subplots(1, 2, figsize=(11, 3.9))
    x = np.array(init_temps)
    for key, label, m in (("std_dz", "std dL/dz", "o-"), ("grad_ratio", "|dW|/|W|", "s-"),
                          ("grad_ratio_centred", "|dW|/|W|, batch mean of p − y removed", "^--")):
        v = np.array([[init[s][T][key] / init[s][1.0][key] for T in init_temps] for s in seeds])
        axes[0].errorbar(x, v.mean(0), yerr=[v.mean(0) - v.min(0), v.max(0) - v.mean(0)], fmt=m, ms=4, label=label)
    axes[0].loglog(x, 1 / x, "k:", lw=1, label="1/T")
    axes[0].set(xlabel="T", ylabel="relative to T = 1", title="at init: what falls with T (mean, range over seeds)")
    for key, label, m in (("softmax_term", "std(p − y)", "o-"), ("batch_mean", "‖mean over the batch of (p − y)‖", "s-"),
                          ("batch_mean_p", "‖mean p − 1/10‖", "^--")):
        v = np.array([[init[s][T][key] for T in init_temps] for s in seeds])
        axes[1].errorbar(x, v.mean(0), yerr=[v.mean(0) - v.min(0), v.max(0) - v.mean(0)], fmt=m, ms=4, label=label)
    axes[1].set(xscale="log", yscale="log", xlabel="T", title="the softmax term p − y at init")
    for a in axes:
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    fig.suptitle(f"srelu WRN-{args.depth}-{args.width}, one batch of {args.batch} per seed, {len(seeds)} seeds", fontsize=9)
    lesson.save_figure(fig, args, FIGURES[2])

    keep = ("loss0", "max_loss", "acc_last", "exploded_at", "dead_from", "verdict", "stopped_at", "steps",
            "mean_loss_first", "dz_std0", "logit_std0", "grad_ratio0", "update_ratio0", "flip0", "loss", "acc")
    lesson.finish(args, {"init": {str(s): {f"T={T:g}": {k: v for k, v in d.items() if k != "logits"}
                                           for T, d in init[s].items()} for s in seeds},
                         "sweep": {k: {str(s): {f: done[(s, k)][f] for f in keep} for s in seeds} for k in plan},
                         "lr_over_t": lr_keys, "steps": {"sweep": args.steps, "lr_over_t": args.lr_steps}}, claims)


if __name__ == "__main__":
    main()
