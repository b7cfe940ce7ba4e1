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

import tinybin.functional as F
from tinybin import nn
from tinybin.models import wrn
from tinybin.probes import Probe, diagnose, short_run
from tinybin.tensor import Tensor, no_grad

import lesson

NEEDS_DATA = True
FIGURES = ["temperature_sweep.png", "t_vs_lr.png", "bn_sigma.png", "heads.png"]
RESULT_KEYS = ["identity", "dz", "sigma_at_init", "sweep", "lr_over_t", "sigma", "heads", "steps"]

EPS = 1e-5
HEADS = {  # kind -> label; every head sits between the head conv's output z and the pool
    "bn": "final BN",
    "sigma": "×1/σ_B only",
    "mean": "mean-only",
    "mean/T": "mean-only, ×1/T",
    "/T": "×1/T alone",
}


class FinalLayer(nn.Module):
    """z (N, H, W, C) -> what the pool sees, one of HEADS, built from public ops.

    Every training forward records the batch statistics of z per channel, μ_B(z) and σ_B(z)
    (biased, over N·H·W values, as BN computes them). "sigma" divides by this batch's σ_B but
    holds it constant in the backward (dL/dz = dL/dy / σ_B): the BN without its centring and
    without the paths through μ_B and σ_B. "mean" is y = z − μ_B (dL/dz = g − mean g).
    """

    def __init__(self, kind: str, temperature: float):
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"unknown head {kind!r}; valid: {', '.join(HEADS)}")
        self.kind, self.temperature = kind, float(temperature)
        self.mu, self.sigma = [], []

    def forward(self, z):
        zr = z.data.reshape(-1, z.shape[-1]).astype(np.float64)   # N·H·W, C
        mu, sigma = zr.mean(axis=0), zr.std(axis=0)                # C
        if self.training:
            self.mu.append(mu)
            self.sigma.append(sigma)
        if self.kind == "bn":
            return F.batch_norm(z, eps=EPS)
        if self.kind == "sigma":
            return z * Tensor((1.0 / np.sqrt(sigma ** 2 + EPS)).astype(z.dtype))   # a constant per channel
        if self.kind == "mean":
            return F.batch_norm(z, mean_only=True)
        if self.kind == "mean/T":
            return F.scale(F.batch_norm(z, mean_only=True), 1.0 / self.temperature)
        return F.scale(z, 1.0 / self.temperature)


def build(args, kind="/T", temperature=1.0, seed=None):
    """srelu WRN whose final layer is FinalLayer(kind). The head has no weights, so the same
    seed gives the same initial latent weights whatever the head and T."""
    model = wrn(depth=args.depth, width=args.width, variant="srelu", bits=args.bits, temperature=1.0,
                rng=args.seed if seed is None else seed)
    model.head.final = FinalLayer(kind, temperature)
    return model


class StopRun(Exception):
    """Raised to end a run early (see Feed)."""


class Feed:
    """What short_run calls every step: the probe; optionally extra weight decay (after the probe
    has read this step's gradients, extra·W is added to every conv's latent gradient, so SGD
    applies (5e-4 + extra)·W); and an early stop. A run that exploded and then gave every image
    the same logits for `stop_dead` steps is ended there: with every unit at its floor no
    gradient reaches the body, and decay cannot flip a sign (lesson 07: such a run never came
    back in 150 steps)."""

    def __init__(self, probe, model, extra_decay=0.0, stop_dead=10):
        self.probe, self.model, self.extra, self.stop_dead = probe, model, extra_decay, stop_dead
        self.hist = {"loss": [], "acc": [], "same_output": []}

    def after_backward(self, model, logits, loss, labels=None):
        self.probe.after_backward(model, logits, loss, labels)
        spread = np.ptp(logits.data, axis=0)                       # per class, across the batch
        self.hist["same_output"].append(bool(np.all(spread <= 1e-6 * (1.0 + np.abs(logits.data).max()))))
        if self.extra:
            for _, conv in self.model.convs():
                conv.weight.grad += self.extra * conv.weight.data

    def after_step(self, model=None):
        self.probe.after_step(model)

    def log(self, step, loss, acc):
        h = self.hist
        h["loss"].append(loss)
        h["acc"].append(acc)
        exploded = max(h["loss"]) > 100 * max(h["loss"][0], np.log(10)) or not np.all(np.isfinite(h["loss"]))
        if exploded and len(h["same_output"]) >= self.stop_dead and all(h["same_output"][-self.stop_dead:]):
            raise StopRun


def window(hist, steps):
    """The first `steps` steps of a run's history (to diagnose a long run as a short one)."""
    return {k: v[:steps] for k, v in hist.items()}


def run(args, x, y, steps, lr, kind="/T", temperature=1.0, extra_decay=0.0):
    model = build(args, kind, temperature)
    probe = Probe(model, sample=0, activations=False)
    feed = Feed(probe, model, extra_decay)
    try:
        short_run(model, x, y, steps, lr, batch_size=args.batch, seed=args.seed, probe=feed, log=feed.log)
    except StopRun:
        pass
    hist = feed.hist
    probe.close()
    recs = probe.records[:len(hist["loss"])]
    ratio = np.array([np.median([v["grad_ratio"] for v in r["layers"].values()]) for r in recs])
    update = np.array([np.median([v.get("update_ratio", np.nan) for v in r["layers"].values()]) for r in recs])
    d = diagnose(window(hist, min(args.steps, steps)))
    d.update(lr=lr, kind=kind, temperature=temperature, steps=steps, extra_decay=extra_decay,
             stopped_at=len(hist["loss"]) if len(hist["loss"]) < steps else None,
             logit_std0=recs[0]["logit_std"], dz_std0=recs[0]["grad"]["z"]["std"],
             median_grad_ratio0=float(ratio[0]), median_update_ratio0=float(update[0]), flip0=recs[0]["flip_ratio"],
             loss=hist["loss"], acc=hist["acc"], logit_std=probe.series("logit_std")[:len(recs)],
             dz_std=probe.series("grad", "z", "std")[:len(recs)], grad_ratio=ratio,
             sigma=np.array(model.head.final.sigma[:len(recs)]), mu=np.array(model.head.final.mu[:len(recs)]))
    if steps > args.steps:
        d["long"] = diagnose(hist)
    if steps > args.long_steps:
        d["mid"] = diagnose(window(hist, args.long_steps))  # where the heads of part 5 stop
    return d


_DATA = {}


def _job(args, spec):
    """One planned run, in this process or in a worker (which loads the images once)."""
    if "x" not in _DATA:
        (_DATA["x"], _DATA["y"]), _ = lesson.load_cifar10(args, quiet=True)
    steps, lr, kind, temperature, extra = spec
    return run(args, _DATA["x"], _DATA["y"], steps, lr, kind, temperature, extra)


def run_all(args, plan):
    """{key: run(...)} for every (steps, lr, kind, T, extra decay) in plan; with --jobs N > 1 in
    N worker processes (serial kernels each), longest runs first."""
    if args.jobs <= 1:
        return {k: _job(args, spec) for k, spec in plan.items()}
    os.environ["TINYBIN_PARALLEL"] = "0"         # N processes already share the cores
    order = sorted(plan, key=lambda k: -plan[k][0])
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {k: pool.submit(_job, args, plan[k]) for k in order}
        return {k: futures[k].result() for k in plan}


def row(label, d):
    verdict = d["verdict"] + (f", stopped at {d['stopped_at']}" if d.get("stopped_at") else "")
    return (f"{label:24s} {d['loss0']:7.3g} {d['max_loss']:9.3g} {100 * d['acc_last']:6.1f}% {d['logit_std0']:9.3g} "
            f"{d['dz_std0']:9.3g} {d['median_grad_ratio0']:9.3g} "
            f"{d['median_update_ratio0']:9.3g} {100 * d['flip0']:7.3f}%  {verdict}")


HEADER = (f"{'run':24s} {'loss@0':>7s} {'max loss':>9s} {'acc':>7s} {'logit std':>9s} {'dL/dz std':>9s} "
          f"{'|dW|/|W|':>9s} {'|ΔW|/|W|':>9s} {'flips@0':>8s}  verdict")


def softmax(logits):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def dz_parts(args, xb, yb, kind, temperature):
    """One forward/backward at init on one batch: dL/dz from autograd beside its closed form.

    Summed-loss convention (the mean-loss gradient × N). With g = dL/dy at the final layer's
    output y (the pool copies (p − onehot)/(H·W) to every position):
        ×1/T : dL/dz = (1/T) · (softmax(z̄/T) − onehot) / (H·W)
        BN   : dL/dz = (1/σ) · (g − mean g − x̂ · mean(g·x̂)),  x̂ = (z − μ)/σ, means per channel
    """
    model = build(args, kind, temperature)
    kept = {}                                                  # z, the head conv's output, kept for its .grad
    remove = model.head.conv.register_forward_hook(lambda m, inp, out: kept.setdefault("z", out.retain_grad()))
    logits = model(xb)
    F.cross_entropy(logits, yb).backward()
    remove()
    n = len(yb)
    z, dz = kept["z"].data.astype(np.float64), kept["z"].grad.astype(np.float64) * n
    hw = z.shape[1] * z.shape[2]
    pmy = softmax(logits.data.astype(np.float64)) - np.eye(z.shape[-1])[yb]          # N, C
    g = np.broadcast_to(pmy[:, None, None, :] / hw, z.shape)                           # dL/dy
    out = {"std_dz": float(dz.std()), "softmax_term": float(pmy.std()), "hw": hw}
    if kind == "/T":
        closed = g / temperature
        out["chain"] = 1.0 / (temperature * hw)
    else:
        zr, gr = z.reshape(-1, z.shape[-1]), g.reshape(-1, z.shape[-1])
        sigma = np.sqrt(zr.var(axis=0) + EPS)
        xhat = (zr - zr.mean(axis=0)) / sigma
        bracket = gr - gr.mean(axis=0) - xhat * (gr * xhat).mean(axis=0)
        closed = (bracket / sigma).reshape(z.shape)
        out.update(inv_sigma=float(np.median(1 / sigma)), std_g=float(gr.std()),
                   std_centred=float((gr - gr.mean(axis=0)).std()), std_bracket=float(bracket.std()))
    out["closed_form_error"] = float(np.abs(closed - dz).max() / np.abs(dz).max())
    return out


def sigma_at_init(args, xb):
    """Median over channels of σ_B(z) on one batch at init (training mode), one per seed."""
    out = []
    for s in range(args.init_seeds):
        model = build(args, "/T", 1.0, seed=s)
        with no_grad():
            model(xb)
        out.append(np.median(model.head.final.sigma[0]))
    return np.array(out)


def mark(ax_loss, ax_acc, d, color):
    """An exploded run gets an × at the step it exploded, a dead one a ▼ from the step its output
    stopped depending on the input."""
    if d["exploded_at"] is not None:
        ax_loss.plot(d["exploded_at"], d["loss"][d["exploded_at"]], "x", color=color, ms=9, mew=2)
    if d["dead_from"] is not None:
        ax_acc.plot(d["dead_from"], 2, "v", color=color, ms=8)


def runs_figure(runs, title, loss_title):
    fig = lesson.loss_accuracy_figure({f"{k} ({d['verdict']})" if d["verdict"] != "learning" else k: d
                                       for k, d in runs.items()},
                                      loss_title, "training accuracy (× exploded, ▼ dead from)", title)
    for (label, d), line in zip(runs.items(), list(fig.axes[0].get_lines())):
        mark(fig.axes[0], fig.axes[1], d, line.get_color())
    fig.axes[1].set_ylim(0, 50)
    return fig


def phase(d, first, last):
    """Means over steps first ≤ step < last of one run's per-step numbers."""
    s = slice(first, last)
    return {k: float(np.mean(np.asarray(d[k], np.float64)[s])) for k in ("loss", "acc", "logit_std", "dz_std")} | {
        "grad_ratio": float(np.median(d["grad_ratio"][s])),
        "sigma": float(np.median(d["sigma"][s])), "abs_mu": float(np.median(np.abs(d["mu"][s])))}


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1, 10, 30, 100], help="values of T")
    parser.add_argument("--long", type=float, nargs="*", default=[30, 100],
                        help="the T values that also run --long-steps (the contenders)")
    parser.add_argument("--head-temperature", type=float, default=30, help="T of the heads with ×1/T in part 5")
    parser.add_argument("--lr-over-t", type=float, nargs="*", default=[30],
                        help="for each T here, also train T = 1 at lr 0.1/T, with weight decay as is and ×T")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine)")
    parser.add_argument("--steps", type=int, default=30, help="SGD steps per run of the sweep")
    parser.add_argument("--long-steps", type=int, default=80, help="steps of the heads of part 5")
    parser.add_argument("--settle-steps", type=int, default=320,
                        help="steps of the contenders (--long) and of the final BN: does T = 100 catch up?")
    parser.add_argument("--init-seeds", type=int, default=20, help="initialisations for σ_B(z) at init")
    parser.add_argument("--jobs", type=int, default=1, help="training runs in parallel (worker processes)")
    lesson.model_flags(parser)
    parser.add_argument("--baseline", action="store_true", help="also train the BN baseline (baseline2)")
    args = parser.parse_args()
    if args.quick:
        args.steps = args.long_steps = args.settle_steps = min(args.steps, 15)
        args.temperatures, args.long, args.lr_over_t, args.init_seeds = [1, 30], [30], [30], 3
    args.long_steps = max(args.long_steps, args.steps)
    args.settle_steps = max(args.settle_steps, args.long_steps)
    T_head = args.head_temperature
    head_kinds = ["bn", "sigma", "mean", "mean/T", "/T"] if not args.quick else ["bn", "mean", "/T"]
    (x_train, y_train), _ = lesson.load_cifar10(args)
    print(f"WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch {args.batch}, "
          f"lr {args.lr:g}, seed {args.seed}; {args.steps} steps per run, {args.settle_steps} for T in "
          f"{args.long} and the final BN, {args.long_steps} for the other heads of part 5")
    xb, yb = x_train[:args.batch].astype(np.float32), y_train[:args.batch]

    # ----- 1. scale before the pool = softmax temperature --------------------------------------
    T = 30.0
    plain, scaled = build(args, "/T", 1.0), build(args, "/T", T)   # identical weights
    logits1, logitsT = plain(xb), scaled(xb)
    diff = float(np.abs(logitsT.data - logits1.data / T).max() / np.abs(logitsT.data).max())
    ce_T = F.cross_entropy(logitsT, yb).item()
    ce_div = F.cross_entropy(logits1 * (1.0 / T), yb).item()
    print(f"\n1. the first {args.batch} training images, same weights: logits of the T={T:g} net vs "
          f"(logits of the T=1 net)/{T:g}: max relative difference {diff:.1e}")
    print(f"   cross-entropy {ce_T:.6f} vs {ce_div:.6f} with temperature {T:g} on the T=1 logits — "
          "GAP is linear, so z/T before it is logits/T after it")
    identity = {"T": T, "max_rel_diff": diff, "ce_scaled_layer": ce_T, "ce_temperature": ce_div}
    for name, logits in (("T=1", logits1.data), (f"T={T:g}", logitsT.data)):
        p = softmax(logits)
        share = np.bincount(p.argmax(1), minlength=p.shape[1]).max() / len(p)
        print(f"   {name:5s} at init: logit std {logits.std():6.2f}, mean top probability {p.max(1).mean():.3f}, "
              f"{100 * share:.0f} % of the batch predicted as one class")
        identity[f"{name} top_prob"], identity[f"{name} one_class_share"] = float(p.max(1).mean()), float(share)

    # ----- 2. dL/dz for both heads, and its two factors ----------------------------------------
    print("\n2. dL/dz at init, same batch and weights (summed-loss convention), autograd against the closed form")
    dz = {}
    for T in sorted({1.0, T_head, 100.0}):
        d = dz[f"T={T:g}"] = dz_parts(args, xb, yb, "/T", T)
        print(f"   ×1/T, T={T:<4g} std dL/dz {d['std_dz']:9.3g} = chain 1/(T·H·W) {d['chain']:9.3g} × softmax term "
              f"std(p − y) {d['softmax_term']:.3f}   (closed form vs autograd: {d['closed_form_error']:.1e})")
    a, b = dz["T=1"], dz[f"T={T_head:g}"]
    print(f"   T=1 → T={T_head:g}: std dL/dz ×1/{a['std_dz'] / b['std_dz']:.1f} = chain ×1/{T_head:g} × softmax term "
          f"×1/{a['softmax_term'] / b['softmax_term']:.2f} (a saturated softmax at T=1 gives p − y of ±1; a soft one "
          "spreads it)")
    d = dz["BN"] = dz_parts(args, xb, yb, "bn", 1.0)
    print(f"   final BN   std dL/dz {d['std_dz']:9.3g} ≈ median 1/σ_B {d['inv_sigma']:.3g} × std of "
          f"(g − mean g − x̂·mean(g·x̂)) {d['std_bracket']:.3g}   (closed form vs autograd: {d['closed_form_error']:.1e})")
    print(f"              std g = (p − y)/(H·W): {d['std_g']:.3g}; after removing its batch mean per channel "
          f"{d['std_centred']:.3g}; after the σ path too {d['std_bracket']:.3g}")

    # σ_B(z) at init over seeds: is the BN's divisor of the size of the T that trains?
    sig = sigma_at_init(args, xb)
    print(f"   σ_B(z) at init, median over the 10 channels, {len(sig)} seeds: median {np.median(sig):.1f}, "
          f"range {sig.min():.1f}–{sig.max():.1f}")

    # ----- every training run of parts 3-5: (steps, lr, head, T, extra weight decay) -------------
    plan = {f"T={T:g}": (args.settle_steps if T in args.long else args.steps, args.lr, "/T", T, 0.0)
            for T in args.temperatures}
    plan["final BN"] = (args.settle_steps, args.lr, "bn", 1.0, 0.0)
    for T in args.lr_over_t:
        plan.setdefault(f"T={T:g}", (args.steps, args.lr, "/T", T, 0.0))
        plan[f"T=1, lr/{T:g}"] = (args.steps, args.lr / T, "/T", 1.0, 0.0)
        if not args.quick:
            plan[f"T=1, lr/{T:g}, wd×{T:g}"] = (args.steps, args.lr / T, "/T", 1.0, 5e-4 * (T - 1))
    for kind in head_kinds:
        if kind == "/T":
            spec = plan.get(f"T={T_head:g}")
            if spec is None or spec[0] < args.long_steps:
                plan[f"T={T_head:g}"] = (args.long_steps, args.lr, "/T", T_head, 0.0)
        elif kind != "bn":
            plan[HEADS[kind]] = (args.long_steps, args.lr, kind, T_head, 0.0)
    done = run_all(args, plan)

    # ----- 3. the sweep over T -----------------------------------------------------------------
    print(f"\n3. T at lr {args.lr:g}, the same initial weights and batches ({args.steps} steps; acc: last "
          f"{min(30, args.steps)} of them)")
    print("   " + HEADER)
    sweep = {}
    for T in args.temperatures:
        sweep[f"T={T:g}"] = done[f"T={T:g}"]
        print("   " + row(f"srelu T={T:g}", sweep[f"T={T:g}"]))
    sweep["final BN"] = done["final BN"]
    print("   " + row("final-bn (final BN)", sweep["final BN"]))
    if args.baseline:
        model = wrn(depth=args.depth, width=args.width, variant="baseline2", bits=args.bits, rng=args.seed)
        hist = short_run(model, x_train, y_train, args.steps, args.lr, batch_size=args.batch, seed=args.seed)
        sweep["baseline2"] = diagnose(hist) | {"loss": hist["loss"], "acc": hist["acc"]}
        print(f"   baseline2 (BN): acc {100 * sweep['baseline2']['acc_last']:.1f}%")
    for key, n in (("mid", args.long_steps), ("long", args.settle_steps)):
        longer = {k: d[key] for k, d in sweep.items() if key in d}
        if longer:
            print(f"   after {n} steps (acc: last 30): " + "; ".join(
                f"{k} {100 * d['acc_last']:.1f}% {d['verdict']}" for k, d in longer.items()))

    # ----- 4. T is not lr/T --------------------------------------------------------------------
    print(f"\n4. T = 1 at lr {args.lr:g}/T against the T net at lr {args.lr:g} (first {args.steps} steps); "
          "weight decay × lr shrinks with lr, so also T = 1 at lr/T with weight decay ×T")
    print("   " + HEADER)
    lr_over_t = {}
    for T in args.lr_over_t:
        sweep.setdefault(f"T={T:g}", done[f"T={T:g}"])
        lr_over_t.update({k: d for k, d in done.items() if k.startswith(f"T=1, lr/{T:g}")})
        print("   " + row(f"T={T:g}, lr {args.lr:g}", sweep[f"T={T:g}"]))
        for k, d in lr_over_t.items():
            if k.startswith(f"T=1, lr/{T:g}"):
                print("   " + row(k, d))
    print("   columns: acc = training accuracy of the last 30 steps (chance 10 %); logit std, dL/dz std, |dW|/|W| "
          "(median over the 20 convs) at step 0; |ΔW|/|W|: the first update, lr·(dW + wd·W) with the velocity at 0 "
          "(median over the convs); flips@0: the weight signs it flipped")

    # ----- 5. what the final BN does: division and centring, separated ---------------------------
    print(f"\n5. five heads on the same weights and batches, lr {args.lr:g}, {args.long_steps} steps, T = {T_head:g}")
    heads = {}
    for kind in head_kinds:
        heads[HEADS[kind]] = done["final BN" if kind == "bn" else f"T={T_head:g}" if kind == "/T" else HEADS[kind]]
    early = (0, min(20, args.long_steps))
    late = (max(args.long_steps - 40, early[1]), args.long_steps) if args.long_steps > early[1] else early
    print(f"   {'head':18s} {'steps':>9s} {'loss':>9s} {'acc':>6s} {'logit std':>9s} {'dL/dz std':>9s} "
          f"{'|dW|/|W|':>9s} {'σ_B(z)':>8s} {'|μ_B(z)|':>8s}  verdict")
    phases = {}
    for label, d in heads.items():
        phases[label] = {}
        for first, last in sorted({early, late}):
            if first >= len(d["loss"]):
                print(f"   {label:18s} {f'{first}-{last}':>9s}  — stopped at step {d['stopped_at']}: exploded, then dead")
                continue
            p = phases[label][f"{first}-{last}"] = phase(d, first, last)
            print(f"   {label:18s} {f'{first}-{last}':>9s} {p['loss']:9.3g} {100 * p['acc']:5.1f}% {p['logit_std']:9.3g} "
                  f"{p['dz_std']:9.3g} {p['grad_ratio']:9.3g} {p['sigma']:8.3g} {p['abs_mu']:8.3g}  "
                  f"{(d.get('long') or d)['verdict'] if last == late[1] else ''}")
    print("   (means over the steps; |dW|/|W|, σ_B(z), |μ_B(z)|: medians over steps, convs or channels; "
          "σ_B, μ_B are of z, before the head)")

    bn = sweep["final BN"]
    sigma_stats = {"per_step_median": np.median(bn["sigma"], axis=1), "per_step_min": bn["sigma"].min(axis=1),
                   "per_step_max": bn["sigma"].max(axis=1), "abs_mu_median": np.median(np.abs(bn["mu"]), axis=1)}
    s = sigma_stats["per_step_median"]
    at = sorted({0, min(20, len(s) - 1), len(s) // 2, len(s) - 1})
    print(f"\n   final BN's σ_B(z) (median over channels) at steps {' / '.join(map(str, at))}: "
          f"{' / '.join(f'{s[i]:.3g}' for i in at)}; all channels, all steps: "
          f"{bn['sigma'].min():.3g}–{bn['sigma'].max():.3g} (the paper's T: 30–100)")

    # ----- figures -----------------------------------------------------------------------------
    title = f"srelu WRN-{args.depth}-{args.width} ({args.bits}-bit), real CIFAR-10, lr {args.lr:g}"
    lesson.save_figure(runs_figure(sweep, title, "loss: ×1/T before the pool, and the final BN"), args, FIGURES[0])
    pairs = {}
    for T in args.lr_over_t:
        pairs[f"T={T:g}, lr {args.lr:g}"] = sweep[f"T={T:g}"]
        pairs.update({k: v for k, v in lr_over_t.items() if k.startswith(f"T=1, lr/{T:g}")})
    lesson.save_figure(runs_figure(pairs, title, "temperature T vs learning rate / T"), args, FIGURES[1])

    plt = lesson.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    steps = np.arange(len(bn["sigma"]))
    for c in range(bn["sigma"].shape[1]):
        axes[0].semilogy(steps, bn["sigma"][:, c], lw=0.8)
        axes[1].semilogy(steps, np.abs(bn["mu"][:, c]), lw=0.8)
    axes[0].axhspan(30, 100, color="tab:green", alpha=0.15, label="the paper's T: 30–100")
    axes[0].axhline(10, color="tab:red", ls=":", lw=1, label="T = 10 (at chance here)")
    axes[0].set(xlabel="step", ylabel="σ_B(z)", title="final BN: σ_B(z) per channel")
    axes[1].set(xlabel="step", ylabel="|μ_B(z)|", title="final BN: |μ_B(z)| per channel")
    for label, d in heads.items():
        axes[2].semilogy(np.arange(len(d["sigma"])), np.median(d["sigma"], axis=1), lw=1, label=label)
    axes[2].set(xlabel="step", ylabel="median σ_B(z)", title="σ_B(z) under each head")
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    axes[2].legend(fontsize=7)
    lesson.save_figure(fig, args, FIGURES[2])
    lesson.save_figure(runs_figure(heads, title, f"loss: five heads (T = {T_head:g})"), args, FIGURES[3])

    keep = ("loss0", "max_loss", "final_loss", "acc_last", "exploded_at", "dead_from", "verdict", "lr", "kind",
            "temperature", "steps", "extra_decay", "logit_std0", "dz_std0", "median_grad_ratio0",
            "median_update_ratio0", "flip0", "stopped_at", "mid", "long", "loss", "acc")
    slim = lambda runs: {k: {f: d[f] for f in keep if f in d} for k, d in runs.items()}
    lesson.finish(args, {"identity": identity, "dz": dz, "sigma_at_init": sig, "sweep": slim(sweep),
                         "lr_over_t": slim(lr_over_t), "sigma": sigma_stats, "heads": phases,
                         "steps": {"sweep": args.steps, "long": args.long_steps, "settle": args.settle_steps}})


if __name__ == "__main__":
    main()
