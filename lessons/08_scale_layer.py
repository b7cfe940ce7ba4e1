"""Lesson 08 — the scale layer: one constant 1/T before the pool is a softmax temperature.

Question
    P2 replaces the final BN of its BN-free nets by a constant scale on the head conv's output z.
    P2 says: "changing this scaling is equivalent to changing the temperature in the softmax
    layer" (§III.D), and T "between approximately 30 and 100" trains like the baseline (§III.D).
    Is it exactly a temperature? Which T trains here at lr 0.1, every T run equally long? P2 also
    says the change "is not equivalent to simply changing the learning rate by a factor of T. This
    is due to the nonlinearity in the softmax layer" (§III.D): where, in numbers? (What the final
    BN does, and what 1/T stands in for: lesson 08b.)

Run
    python lessons/08_scale_layer.py    (3 seeds: 13 minutes single-threaded on a 2-core machine
    shared with other runs)
    --quick: 2 seeds, T = 1 and 30 only, 8 steps; --jobs 2: two runs at a time in worker processes

Expected output (full run: srelu WRN-20-1, 1-bit, the 4000 images of the shipped subset, batch 125,
cosine laid out for 30 epochs, seeds 0-2, 50 steps for every T, 20 for the lr/T runs;
TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1; mean [range] over the 3 seeds; condensed)
    1. logits of the T=30 net = (logits of the T=1 net)/30 to 3.2e-07 [2.0e-07–4.6e-07]
         T   logit std  top probability  share of the batch in one class
         1        19.1             0.93             0.87
        10        1.91             0.40             0.87
        30        0.64             0.20             0.87
       100        0.19             0.13             0.87
    2. at init, one batch per seed (summed-loss convention; |dW|/|W|: median over the 20 convs;
       centred: the upstream p − y with its batch mean removed)
         T  std dL/dz  std(p − y)  ‖mean_n(p − y)‖  ‖mean p − 1/10‖  |dW|/|W|  centred
         1    0.00637       0.408            0.796            0.795      10.5     1.58
        10   0.000504       0.322            0.349            0.354     0.647     0.17
        30   0.000158       0.303            0.149            0.152     0.109   0.0469
       100   4.69e-05       0.300           0.0734           0.0518    0.0158   0.0121
       (the batch's label mix, ‖mean y − 1/10‖: 0.0735)
       T=1 → 30:   std dL/dz ÷40.3 [40–40.6], |dW|/|W| ÷102 [80–134], centred ÷33.4 [31.5–35.7]
       T=30 → 100: std dL/dz ÷3.37 [3.34–3.39], |dW|/|W| ÷6.89 [5.5–9.4], centred ÷3.83 [3.37–4.28]
    3. T at lr 0.1, 50 steps each; acc: training accuracy of the last 30 steps; verdicts:
       tinybin.train.divergence.diagnose ("learning": acc > 15 %)
         run    max loss                  acc %              |ΔW|/|W| step 0  verdicts
         T=1    1.9e+19 [3.6e+15–5.7e+19]  10.9 [9.6–11.5]   1.03             exploded, then dead 3/3
         T=10   4.84 [4.03–5.64]           10.4 [9.9–10.7]   0.060            at chance 2/3, dead 1/3
         T=30   2.50 [2.34–2.58]           14.9 [12.6–16.2]  0.0096           learning 2/3
         T=100  2.38 [2.32–2.48]           15.1 [10.8–18.1]  0.0014           learning 2/3
    4. first 20 steps     mean loss          acc %             |ΔW|/|W| step 0  flips@0
         T=30, lr 0.1     2.28 [2.24–2.31]   12.7 [11.8–14.1]  0.0096           0.21 %
         T=1, lr/30       5.58 [5.08–6.09]   11.2 [10.8–11.9]  0.0343           0.83 %
    CLAIMs, k of 3 seeds: the logits are the T=1 logits / 30: 3; a higher T is softer: 3; closed
    form of dL/dz: 3; |dW|/|W| falls more than std dL/dz, T=1 → 30: 3 (2.5× [2.0–3.3]), T=30 →
    100: 3 (2.0× [1.6–2.8]); with the batch mean removed it falls less: 3 and 3; T=1 explodes: 3;
    learning after 50 steps: T=10 0, T=30 2, T=100 2; T=10 ahead of T=30: 0; T=30 ahead of T=100:
    1 (−0.15 points [−1.8–1.8]); T=1 at lr/30 takes a larger first step than T=30: 3 (4.3×
    [2.6–6.9]); and has the higher mean loss over 20 steps: 3 (2.45× [2.2–2.7])

Takeaway
    A temperature, exactly: GAP is linear, so the T net's logits are the T = 1 net's divided by T
    (to 5e-7, 3 of 3 seeds). The winning class stays (87 % of the batch in one class at every T);
    a higher T makes the softmax softer, or hotter, not colder (top probability 0.93 → 0.13).

    Why T is not lr/T. dL/dz = (1/T)(p − y)/(H·W), and std(p − y) changes little (0.41 at T = 1,
    0.30 from T = 30 on): std dL/dz falls ÷40 from T = 1 to 30, |dW|/|W| ÷102 (÷80–134; more in 3
    of 3 seeds). The difference is the batch mean of p − y, the part every image shares: a
    saturated softmax sends 87 % of the batch to one class with p ≈ 1, ‖mean_n(p − y)‖ = 0.80 (0.15
    at T = 30). It adds up over the batch in dW = Σ h·dL/dz while the rest partly cancels: with it
    removed, |dW|/|W| falls ÷33, about as dL/dz (÷40), instead of ÷102 (3 of 3). lr/30 shrinks
    every step by exactly 30, shared part included: the first update of T = 1 at lr/30 is 4.3×
    (2.6–6.9×) T = 30's, it flips 0.83 % of the signs against 0.21 %, and its forward stays
    saturated (mean loss 5.6 over 20 steps against 2.3), 3 of 3 seeds. (--decay-too adds T = 1 at
    lr/30 with weight decay ×30, the T = 30 run's lr·wd; not part of the full run.)

    From T = 30 to 100, |dW|/|W| falls 6.9× (5.5–9.4×) while dL/dz falls 3.4×: the shared part is
    ‖mean_n(p − y)‖/T, and ‖mean_n(p − y)‖ still falls ÷2.1 (1.7–2.9), as ‖mean p − 1/10‖ shrinks
    about as 1/T (0.152 → 0.052) until the batch's label mix is left (‖mean_n(p − y)‖ 0.073 at
    T = 100, the mix 0.074); ÷2.1 × 3.3 ≈ ÷6.9. Centred, |dW|/|W| falls ÷3.8 (3.4–4.3), close to
    dL/dz's ÷3.4 (3 of 3). From T = 1 to 30 likewise: the shared part falls ÷5.5 × 30 ≈ ÷164, the
    rest ÷33, and |dW|/|W| (÷102) lies between. So a larger T mainly removes the push of every
    image toward the same class, leaving the per-image label signal at scale 1/T: tinybin's
    reading of P2's "nonlinearity in the softmax layer" (§III.D), in numbers.

    Which T, 50 steps on 3 seeds. T = 1 explodes at step 1 in every seed and is stopped as dead
    (the same logits for every image for 10 steps) at steps 16–22. T = 10 learns in no seed (dead,
    without exploding, in one) and trails T = 30 in every seed (by 4.6 points, 2.7–5.7). T = 30 and
    T = 100 each learn in 2 of 3 seeds (the third is still at chance at step 50), T = 30 ahead in 1
    of 3, though T = 100's update per step is 6.6× smaller; on average T = 100 is 0.15 points ahead
    (−1.8 to 1.8 over the seeds; the same to the digit as the previous full run, before the direct
    stride-2 and stem weight-gradient kernels; one before Winograd's weight gradient had T = 30
    0.3 points ahead, also 1 of 3): 50 steps do not separate 30 and 100. P2: T "between
    approximately 30 and 100" trains, "lower values of T tended to result in failure to converge
    shortly after training commenced" (§III.D): at 50 steps of this narrow net, in line with that;
    whether 30 or 100 pulls ahead later is open here (--steps 200).

    Lesson 06's T ≈ 46 (srelu's logit std over baseline2's at init) against the final BN's σ_B(z)
    ≈ 16: lesson 08b measures both on the same seeds (the division alone acts like T ≈ 22, the
    final BN with its centring like T ≈ 52, baseline2's ratio is 53 there).

Try next
    --steps 200                    every T for longer: does T = 100 keep pace with T = 30?
    --temperatures 1 3 10 20 30 60 100 300    where between 10 and 100 does it start to train?
    --decay-too                    also T = 1 at lr/30 with weight decay ×30 (the same lr·wd)
    --seeds 5                      more seeds
    --bits 32                      the authors use T = 80 for 32-bit weights
"""
import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from tinybin import kernels
from tinybin.models import wrn
from tinybin.train.divergence import diagnose

import lesson
import short_runs

NEEDS_DATA = True
FIGURES = ["temperature_sweep.png", "t_vs_lr.png", "init_gradients.png"]
RESULT_KEYS = ["init", "sweep", "lr_over_t", "steps"]
STYLE = {1: ("tab:red", ":"), 10: ("tab:orange", "-."), 30: ("tab:blue", "-"), 100: ("tab:green", "--")}
KEEP = ("loss0", "max_loss", "acc_last", "exploded_at", "dead_from", "verdict", "stopped_at", "steps",
        "mean_loss_first", "dz_std0", "logit_std0", "grad_ratio0", "update_ratio0", "flip0", "loss", "acc")
_DATA = {}


def build(args, temperature, seed):
    """The srelu WRN with ×1/T before the pool; for one seed, the same latent weights whatever T."""
    return wrn(depth=args.depth, width=args.width, variant="srelu", bits=args.bits, temperature=temperature, rng=seed)


def at_init(args, xb, yb, temperature, seed):
    """One batch at init through the T net: logits, dL/dz beside its closed form (1/T)(p − y)/(H·W) (summed-loss
    convention), p − y and its batch mean, |dW|/|W| (median over the 20 convs) from (p − y)/N, and again centred."""
    model, centred, kept, n = build(args, temperature, seed), build(args, temperature, seed), {}, len(yb)
    remove = model.head.conv.register_forward_hook(lambda m, inp, o: kept.setdefault("z", o.retain_grad()))
    logits = model(xb)
    remove()
    l64 = logits.data.astype(np.float64)
    p = np.exp(l64 - l64.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    onehot = np.eye(p.shape[1])[yb]
    pmy = p - onehot
    logits.backward((pmy / n).astype(logits.data.dtype))
    centred(xb).backward(((pmy - pmy.mean(axis=0)) / n).astype(logits.data.dtype))
    ratio = lambda m: float(np.median([np.linalg.norm(c.weight.grad) / np.linalg.norm(c.weight.data) for _, c in m.convs()]))
    z, dz = kept["z"].data, kept["z"].grad.astype(np.float64) * n
    hw = z.shape[1] * z.shape[2]
    closed = np.broadcast_to(pmy[:, None, None, :] / (hw * temperature), dz.shape)
    return dict(logits=l64, std_dz=float(dz.std()), chain=1.0 / (temperature * hw), softmax_term=float(pmy.std()),
                closed_form_error=float(np.abs(closed - dz).max() / np.abs(dz).max()), top_prob=float(p.max(1).mean()),
                one_class=float(np.bincount(p.argmax(1), minlength=p.shape[1]).max() / n),
                batch_mean=float(np.linalg.norm(pmy.mean(axis=0))),
                batch_mean_p=float(np.linalg.norm(p.mean(axis=0) - 1.0 / p.shape[1])),
                batch_mean_y=float(np.linalg.norm(onehot.mean(axis=0) - 1.0 / p.shape[1])),
                grad_ratio=ratio(model), grad_ratio_centred=ratio(centred))


def train(args, seed, steps, lr, temperature, extra_decay):
    """One run of `steps` SGD steps (stopped early once dead), in this process or in a worker (which loads the
    images once); diagnose() of its first min(steps, args.lr_steps) steps under "first", and the probe's step 0."""
    if not _DATA:
        (_DATA["x"], _DATA["y"]), _ = lesson.load_cifar10(args, quiet=True)
    model = build(args, temperature, seed)
    hist, probe = short_runs.probed_run(model, _DATA["x"], _DATA["y"], steps, lr, args.batch, seed, extra_decay)
    r0, n, d = probe.records[0], min(steps, args.lr_steps), diagnose(hist)
    median0 = lambda key: float(np.median([v[key] for v in r0["layers"].values()]))
    d.update(first=diagnose({k: v[:n] for k, v in hist.items()}), mean_loss_first=float(np.mean(hist["loss"][:n])),
             stopped_at=len(hist["loss"]) if len(hist["loss"]) < steps else None, steps=steps,
             loss=hist["loss"], acc=hist["acc"], dz_std0=r0["grad"]["z"]["std"], logit_std0=r0["logit_std"],
             grad_ratio0=median0("grad_ratio"), update_ratio0=median0("update_ratio"), flip0=r0["flip_ratio"])
    return d


def run_all(args, plan, seeds):
    """{key: {seed: train(...)}} for every run {key: (steps, lr, T, extra decay)} of the plan on every seed; with
    --jobs N > 1 in N worker processes (serial kernels each), longest runs first."""
    jobs = [(k, s) for s in seeds for k in plan]
    if args.jobs <= 1:
        done = {(k, s): train(args, s, *plan[k]) for k, s in jobs}
    else:
        serial = functools.partial(kernels.settings, parallel=False)   # N processes already share the cores
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"), initializer=serial) as pool:
            futures = {(k, s): pool.submit(train, args, s, *plan[k]) for k, s in sorted(jobs, key=lambda j: -plan[j[0]][0])}
            done = {j: futures[j].result() for j in jobs}
    return {k: {s: done[(k, s)] for s in seeds} for k in plan}


def table(first, cols, rows):
    """Print a table: `first` heads the label column; rows {label: one record per seed}; cols [(heading, width, key
    or function of a record)], a cell 'mean [min–max]' over the seeds; width 0: text, a function of all the records."""
    get = lambda key, d: d[key] if isinstance(key, str) else key(d)
    print("   " + first + "".join(f" {h:>{w}s}" if w else f"  {h}" for h, w, _ in cols))
    for label, ds in rows.items():
        print("   " + label + "".join(f" {short_runs.cell(get(key, d) for d in ds):>{w}s}" if w else f"  {key(ds)}"
                                      for _, w, key in cols))


def verdicts(runs):
    """'verdict k/n, ...' over the seeds, and where runs were stopped early."""
    kinds = dict.fromkeys(r["verdict"] for r in runs)
    text = ", ".join(f"{v} {sum(r['verdict'] == v for r in runs)}/{len(runs)}" for v in kinds)
    stopped = [r["stopped_at"] or r["steps"] for r in runs]
    return text + (f" (stopped at {short_runs.cell(stopped, '.0f')})" if any(r["stopped_at"] for r in runs) else "")


def main():
    parser = lesson.parser(__doc__, __file__)
    lesson.seeds_flag(parser, full=3, quick=2)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1, 10, 30, 100], help="values of T")
    parser.add_argument("--lr-over-t", type=float, default=30, help="T set against T = 1 at lr/T (and weight decay ×T)")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine)")
    parser.add_argument("--steps", type=int, default=50, help="SGD steps of every run of the sweep over T")
    parser.add_argument("--lr-steps", type=int, default=20, help="steps of the lr/T runs (and of their comparison)")
    parser.add_argument("--decay-too", action="store_true", help="also T = 1 at lr/T with weight decay ×T (the same lr·wd)")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel (worker processes)")
    lesson.model_flags(parser)
    args = parser.parse_args()
    if args.quick:
        args.steps = args.lr_steps = min(args.steps, 8)
        args.temperatures = [1, 30]
    args.lr_steps = min(args.lr_steps, args.steps)
    tl, lr, seeds, claims, cell = args.lr_over_t, args.lr, args.seeds, [], short_runs.cell
    temps = sorted(set(args.temperatures) | {1.0, tl})
    init_temps = sorted(set(temps) | {100.0})
    (x_train, y_train), _ = lesson.load_cifar10(args)
    print(f"srelu WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch "
          f"{args.batch}, lr {lr:g}, seeds {seeds}; {args.steps} steps for every T, {args.lr_steps} for the lr/T runs")

    def check(text, held, values, unit="", quick=False):
        """lesson.claim from the per-seed verdicts and values, in the order of the seeds."""
        claims.append(lesson.claim(text, dict(zip(seeds, held)), dict(zip(seeds, values)), unit, quick))

    # ----- 1. scale before the pool = softmax temperature; 2. dL/dz at init ----------------------
    init = {}
    for s in seeds:
        idx = np.random.default_rng(s).choice(len(x_train), args.batch, replace=False)
        init[s] = {T: at_init(args, x_train[idx].astype(np.float32), y_train[idx], T, s) for T in init_temps}
    init_of = lambda key, T: np.array([init[s][T][key] for s in seeds])
    rows = {f"{T:5g}": [init[s][T] for s in seeds] for T in init_temps}
    rel = [float(np.abs(d[tl]["logits"] - d[1.0]["logits"] / tl).max() / np.abs(d[tl]["logits"]).max()) for d in init.values()]
    print(f"\n1. one batch per seed at init, the same weights: logits of the T={tl:g} net against (logits of the T=1 "
          f"net)/{tl:g}: max relative difference {cell(rel, '.1e')}")
    check(f"the T={tl:g} net's logits are the T=1 net's logits divided by {tl:g} (to 1e-5): ×1/T before the pool is a "
          "softmax temperature", [r < 1e-5 for r in rel], rel, quick=True)
    table(f"{'T':>5s}", [("logit std", 20, lambda d: np.std(d["logits"])), ("top probability", 20, "top_prob"),
                         ("share in one class", 20, "one_class")], rows)
    top = {T: init_of("top_prob", T) for T in (1.0, tl, 100.0)}
    check(f"a higher T is a softer (hotter) softmax: the mean top probability falls from T=1 to T={tl:g} to T=100",
          (top[1.0] > top[tl]) & (top[tl] > top[100.0]), top[tl], f" at T={tl:g}", quick=True)

    print("\n2. dL/dz at init = chain 1/(T·H·W) × softmax term (p − y); ‖mean over the batch of (p − y)‖ = "
          "‖(mean p − 1/10) − (mean y − 1/10)‖; |dW|/|W|: median over the 20 convs, from (p − y) and from (p − y) "
          "with its batch mean removed. Mean [range] over seeds")
    table(f"{'T':>5s}", [("std dL/dz", 26, "std_dz"), ("std(p − y)", 20, "softmax_term"),
                         ("‖mean_n(p − y)‖", 20, "batch_mean"), ("‖mean p − 1/10‖", 20, "batch_mean_p"),
                         ("|dW|/|W|", 24, "grad_ratio"), ("|dW|/|W| centred", 24, "grad_ratio_centred")], rows)
    print(f"   ‖mean y − 1/10‖ (the batch's label mix, the same for every T): {cell(init_of('batch_mean_y', 1.0))}")
    err = np.max([init_of("closed_form_error", T) for T in init_temps], axis=0)
    check("dL/dz = (1/T)·(softmax − onehot)/(H·W): the closed form matches autograd (to 1e-4, every T)", err < 1e-4, err,
          quick=True)
    for a, b in ((1.0, tl), (tl, 100.0)):
        fw, fz, fc, fm = (init_of(k, a) / init_of(k, b) for k in ("grad_ratio", "std_dz", "grad_ratio_centred", "batch_mean"))
        print(f"   T={a:g} → T={b:g}: std dL/dz ÷{cell(fz)}; |dW|/|W| ÷{cell(fw)}; with the batch mean of (p − y) removed "
              f"÷{cell(fc)}; ‖mean_n(p − y)‖ ÷{cell(fm)}")
        pair = f"from T={a:g} to T={b:g}"
        check(f"{pair}, |dW|/|W| at init falls more than std dL/dz", fw > fz, fw / fz, "× (ratio of the two falls)")
        check(f"{pair}, with the batch mean of (p − y) removed, |dW|/|W| falls less than with it", fc < fw, fc / fz,
              "× the fall of std dL/dz")
        shrinks = init_of("batch_mean", b) < init_of("batch_mean", a)
        check(f"{pair}, the batch mean ‖mean_n(p − y)‖ shrinks", shrinks, fm, "× (fall)")

    # ----- 3. the sweep over T, and 4. T against lr/T: every run on every seed ------------------
    plan = {f"T={T:g}": (args.steps, lr, T, 0.0) for T in temps}
    plan[f"T=1, lr/{tl:g}"] = (args.lr_steps, lr / tl, 1.0, 0.0)
    if args.decay_too:
        plan[f"T=1, lr/{tl:g}, wd×{tl:g}"] = (args.lr_steps, lr / tl, 1.0, 5e-4 * (tl - 1))
    runs = run_all(args, plan, seeds)
    run_of = lambda k, key: np.array([runs[k][s][key] for s in seeds])
    w = min(30, args.steps)
    print(f"\n3. T at lr {lr:g}, the same initial weights and batches per seed, {args.steps} steps each; "
          f"acc: training accuracy of the last {w} steps (chance 10 %); mean [range] over {len(seeds)} seeds")
    step0 = [("|ΔW|/|W| step 0", 24, "update_ratio0"), ("flips@0 %", 22, lambda r: 100 * r["flip0"])]
    table(f"{'run':22s}", [("max loss", 24, "max_loss"), ("acc %", 20, lambda r: 100 * r["acc_last"]), *step0,
                           ("verdicts", 0, verdicts)], {f"{k:22s}": list(rs.values()) for k, rs in runs.items()})
    exploded = [r["exploded_at"] is not None for r in runs["T=1"].values()]
    check(f"srelu T=1 at lr {lr:g} explodes (tinybin.train.divergence)", exploded, run_of("T=1", "max_loss"), " max loss",
          quick=True)
    for k in [f"T={T:g}" for T in temps if T > 1]:
        check(f"{k} is learning after {args.steps} steps (acc of the last {w} > 15 %)", run_of(k, "verdict") == "learning",
              100 * run_of(k, "acc_last"), " %")
    for a, b in ((10.0, 30.0), (30.0, 100.0)):
        if a in temps and b in temps:
            A, B = run_of(f"T={a:g}", "acc_last"), run_of(f"T={b:g}", "acc_last")
            check(f"T={a:g} is ahead of T={b:g} after {args.steps} steps (acc of the last {w})", A > B, 100 * (A - B), " points")

    print(f"\n4. T = 1 at lr {lr:g}/{tl:g} against T = {tl:g} at lr {lr:g}, first {args.lr_steps} steps "
          "(weight decay × lr shrinks with lr, so also T = 1 at lr/T with weight decay ×T)")
    lr_keys = [f"T={tl:g}"] + [k for k in plan if k.startswith("T=1, lr/")]
    table(f"{'run':22s}", [("mean loss", 24, "mean_loss_first"), ("acc %", 20, lambda r: 100 * r["first"]["acc_last"]),
                           *step0], {f"{k:22s}": list(runs[k].values()) for k in lr_keys})
    hot, slow = run_of(lr_keys[0], "update_ratio0"), run_of(lr_keys[1], "update_ratio0")
    check(f"the first update of T=1 at lr/{tl:g} is larger than that of T={tl:g} at lr {lr:g}", slow > hot, slow / hot, "×")
    for k in lr_keys[1:]:
        hot, slow = run_of(lr_keys[0], "mean_loss_first"), run_of(k, "mean_loss_first")
        check(f"{k} has a higher mean loss than T={tl:g} at lr {lr:g} over the first {args.lr_steps} steps", slow > hot,
              slow / hot, "×")

    # ----- figures -----------------------------------------------------------------------------
    title = f"srelu WRN-{args.depth}-{args.width} ({args.bits}-bit), lr {lr:g}, {len(seeds)} seeds (thick: seed {seeds[0]}), "
    groups = {f"T={T:g}": (list(runs[f"T={T:g}"].values()), *STYLE.get(int(T), ("k", "-"))) for T in temps}
    lesson.save_figure(short_runs.runs_over_seeds_figure(groups, title + f"{args.steps} steps per T"), args, FIGURES[0])
    first = [{**r, "loss": r["loss"][:args.lr_steps], "acc": r["acc"][:args.lr_steps]} for r in runs[lr_keys[0]].values()]
    groups = {f"T={tl:g}, lr {lr:g}": (first, "tab:blue", "-")}
    groups.update({k: (list(runs[k].values()), c, ls) for k, c, ls in zip(lr_keys[1:], ("tab:red", "tab:purple"), ("--", ":"))})
    lesson.save_figure(short_runs.runs_over_seeds_figure(
        groups, title + f"first {args.lr_steps} steps: temperature T against learning rate / T"), args, FIGURES[1])
    fig, axes = lesson.pyplot().subplots(1, 2, figsize=(11, 3.9))
    x = np.array(init_temps)
    for i, key, label, m in ((0, "std_dz", "std dL/dz", "o-"), (0, "grad_ratio", "|dW|/|W|", "s-"),
                             (0, "grad_ratio_centred", "|dW|/|W|, batch mean of p − y removed", "^--"),
                             (1, "softmax_term", "std(p − y)", "o-"),
                             (1, "batch_mean", "‖mean over the batch of (p − y)‖", "s-"),
                             (1, "batch_mean_p", "‖mean p − 1/10‖", "^--")):
        v = np.array([[init[s][T][key] / (init[s][1.0][key] if i == 0 else 1) for T in init_temps] for s in seeds])
        axes[i].errorbar(x, v.mean(0), yerr=[v.mean(0) - v.min(0), v.max(0) - v.mean(0)], fmt=m, ms=4, label=label)
    axes[0].loglog(x, 1 / x, "k:", lw=1, label="1/T")
    axes[0].set(xlabel="T", ylabel="relative to T = 1", title="at init: what falls with T (mean, range over seeds)")
    axes[1].set(xscale="log", yscale="log", xlabel="T", title="the softmax term p − y at init")
    for a in axes:
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    fig.suptitle(f"srelu WRN-{args.depth}-{args.width}, one batch of {args.batch} per seed, {len(seeds)} seeds", fontsize=9)
    lesson.save_figure(fig, args, FIGURES[2])

    lesson.finish(args, {"init": {str(s): {f"T={T:g}": {k: v for k, v in d.items() if k != "logits"}
                                           for T, d in init[s].items()} for s in seeds},
                         "sweep": {k: {str(s): {f: r[f] for f in KEEP} for s, r in rs.items()} for k, rs in runs.items()},
                         "lr_over_t": lr_keys, "steps": {"sweep": args.steps, "lr_over_t": args.lr_steps}}, claims)


if __name__ == "__main__":
    main()
