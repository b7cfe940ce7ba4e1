"""Lesson 08b — the final BN: what it does to z, and which part of it 1/T stands in for.

Question
    final-bn (lesson 10) is the BN-free srelu WRN with one batch norm left, between the head conv's
    output z and the pool. P2 says a single BN there "was sufficient to enable the network to be
    trained exactly like the baseline models" (§III.D), and reads it as "the standarized scaling
    the final BN layer imparts on gradients from the output" (§III.D). Its forward is
    (z − μ_B(z))/σ_B(z) per channel: a centring and a division. Which of the two keeps the net
    alive at lr 0.1? Is the division the constant 1/T of lesson 08, and how does lesson 06's
    T ≈ 46 relate to σ_B(z) ≈ 16 at init?

Run
    python lessons/08b_final_bn.py       (3 seeds: 10 minutes single-threaded on a 2-core machine
    shared with two other runs)
    --quick: 2 seeds, 3 heads (final BN, mean-only, ×1/T alone), 8 steps, σ_B at init over 3 inits

Expected output (full run: srelu WRN-20-1, 1-bit, the 4000 images of the shipped subset, batch 125,
lr 0.1, cosine laid out for 30 epochs, seeds 0-2, 30 steps per head, T = 30; single-threaded;
mean [range] over the 3 seeds; condensed)
    1. final BN at init: std dL/dz 0.000271 [0.000233–0.000301]; std g = (p − y)/(H·W) 0.00472,
       after its batch mean per channel 0.00470, after the σ path too 0.00469 (0.994× g, 3 of 3)
       closed form (1/σ)(g − mean g − x̂·mean(g·x̂)) against autograd: 1.9e-06 [1.0e-06–2.4e-06]
       σ_B(z) at init, median over channels, 20 initialisations: median 15.3, range 6.6–27
       T giving the T = 1 net's logits the same std: ×1/σ_B only 22.5 [17.5–25]; final BN 52.2
       [42.8–64.3]; baseline2 (lesson 06's T) 52.8 [42.5–70.4]
    2. 5 heads on the same weights and batches, T = 30, 30 steps; acc: training accuracy of all
       30 steps; σ_B(z): median over channels, then over steps 0-20; verdicts: divergence.diagnose
         head              max loss                  acc %              σ_B(z)          verdicts
         final BN          2.36 [2.29–2.42]          18.6 [17.1–19.9]   266 [42–595]    learning 3/3
         ×1/σ_B only       8.25 [2.99–14.7]          13.0 [11.1–15.4]   2.6 [2.0–3.3]   at chance 2/3
         mean-only         5.3e+14 [7.4e+13–7.6e+14] 10.0 [9.7–10.3]    —               exploded, then dead 3/3
         mean-only, ×1/T   2.38 [2.34–2.40]          17.1 [16.4–18.2]   21.7 [20–24]    learning 3/3
         ×1/T alone        2.49 [2.31–2.58]          13.2 [11.5–15.0]   6.8 [3.9–11.5]  at chance 2/3
    CLAIMs, k of 3 seeds: closed form of the BN backward 3; mean terms < 5 % 3; ÷σ_B alone like a
    T below 30: 3; the final BN like a T in 30–100: 3; mean-only explodes 3; ×1/σ_B only not
    learning 2; learning: final BN 3, mean-only ×1/T 3, ×1/T alone 1; final BN ahead of mean-only
    ×1/T 3 (1.5 points [0.8–2.1]); mean-only ×1/T ahead of ×1/T alone 3 (3.9 [1.3–6.8]); final BN
    ahead of ×1/T alone 3 (5.5 [2.1–8.4]); the final BN's σ_B(z) above 100 within 20 steps: 2
    (peak 81, 2390, 4210)

Takeaway
    At init the final BN's backward is a division: its two mean terms change g by 0.6 % (3 of 3), so
    dL/dz ≈ g/σ_B(z), σ_B(z) ≈ 15 (6.6–27 over 20 initialisations). As a constant, that would be a T
    of about 15–25 (the logits shrink like T = 22.5, 17.5–25), below P2's 30–100, between lesson
    08's T = 10 (which fails) and 30. What brings the BN net's logits to the scale of a T in 30–100
    is the centring as well: the final BN as a whole shrinks them like T = 52 (43–64, 3 of 3 within
    30–100), the same as lesson 06's ratio of srelu's logit std to baseline2's (53, 42–70 here; 46
    in lesson 06's one seed). The centring removes the part of z every image shares (87 % of the
    batch in one class at init, lesson 08), which a scale alone keeps.

    The division does not stay a constant. As final-bn trains, z grows and σ_B(z) follows it: its
    median over channels peaks at 2390 and 4210 within 20 steps in two seeds, 81 in the third (2 of
    3 above 100), far outside P2's 30–100. So the final BN is not a fixed temperature; in dL/dz it
    divides by whatever z has become.

    Five heads on the same weights and batches separate the two operations (30 steps, 3 seeds).
    Centring alone (mean-only) explodes in every seed (max loss 7.4e13–7.6e14) and is then dead: it
    keeps z's scale, like T = 1. "×1/σ_B only" divides by this batch's σ_B(z) but holds σ_B constant in
    the backward (dL/dz = dL/dy/σ_B), so it is not BN's division, whose backward also runs through
    μ_B and σ_B: it stays finite, but z shrinks under it (σ_B 2–3), its loss climbs (up to 3–15) and
    it learns in 1 of 3 seeds. The three heads whose division reaches the backward all stay alive;
    their order is the same in every seed: the final BN (18.6 %) ahead of mean-only then ×1/T (17.1 %,
    by 0.8–2.1 points), which is ahead of ×1/T alone (13.2 %, by 1.3–6.8 points; it learns in 1
    of 3 by step 30, lesson 08: T = 30 learns in 2 of 3 by step 50). So a fixed 1/T keeps the net
    alive where centring alone does not, and the centring, removing the part of z every image
    shares, is what makes it start faster. tinybin's mean-bn variant (lesson 10) is ×1/T then
    mean-only BN; P2 says of its variant 6 only "a 'mean-only BN' layer at the end of the network
    [27], without a learned bias" (§IV): the ×1/T before it is from the authors' code. Whether the
    final BN's lead survives longer runs is open here (--steps 200).

Try next
    --steps 200                   the heads for longer: does ×1/T alone catch up?
    --head-temperature 100        the heads with ×1/T at another T
    --seeds 5                     more seeds
    --bits 32                     full-precision weights
"""
import numpy as np

import tinybin.functional as F
from tinybin import nn
from tinybin.models import wrn
from tinybin.tensor import Tensor, no_grad
from tinybin.train.divergence import diagnose

import lesson
import short_runs

NEEDS_DATA = True
FIGURES = ["heads.png", "bn_sigma.png"]
RESULT_KEYS = ["init", "sigma_at_init", "heads", "steps"]

EPS = 1e-5
HEADS = {  # kind -> (label, colour, line style); every head sits between z and the pool
    "bn": ("final BN", "k", "-"),
    "sigma": ("×1/σ_B only", "tab:purple", ":"),
    "mean": ("mean-only", "tab:red", "-."),
    "mean/T": ("mean-only, ×1/T", "tab:green", "--"),
    "/T": ("×1/T alone", "tab:blue", "-"),
}


class FinalLayer(nn.Module):
    """z (N, H, W, C) -> what the pool sees, one of HEADS, built from public ops.

    Every training forward records the batch statistics of z per channel, μ_B(z) and σ_B(z)
    (biased, over N·H·W values, as BN computes them). "sigma" divides by this batch's σ_B but
    holds it constant in the backward (dL/dz = dL/dy / σ_B): not BN's division, whose backward
    also runs through σ_B and μ_B. "mean" is y = z − μ_B (dL/dz = g − mean g).
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


def build(args, kind, temperature, seed):
    """srelu WRN whose final layer is FinalLayer(kind). The head has no weights, so one seed gives
    the same initial latent weights whatever the head and T."""
    model = wrn(depth=args.depth, width=args.width, variant="srelu", bits=args.bits, temperature=1.0, rng=seed)
    model.head.final = FinalLayer(kind, temperature)
    return model


def softmax(logits):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def at_init(args, xb, yb, seed):
    """One batch at init: the final BN's dL/dz from autograd beside its closed form
    (1/σ)(g − mean g − x̂·mean(g·x̂)), g = (p − y)/(H·W), means per channel over N·H·W (summed-loss
    convention); and the logit std of the same body under ×1 (T = 1), ×1/σ_B only, the final BN,
    and of baseline2 (lesson 06's reference) on the same seed."""
    model = build(args, "bn", 1.0, seed)
    kept = {}
    remove = model.head.conv.register_forward_hook(lambda m, inp, o: kept.setdefault("z", o.retain_grad()))
    logits = model(xb)
    F.cross_entropy(logits, yb).backward()
    remove()
    n = len(yb)
    z, dz = kept["z"].data.astype(np.float64), kept["z"].grad.astype(np.float64) * n
    hw = z.shape[1] * z.shape[2]
    pmy = softmax(logits.data.astype(np.float64)) - np.eye(z.shape[-1])[yb]
    zr, gr = z.reshape(-1, z.shape[-1]), np.broadcast_to(pmy[:, None, None, :] / hw, z.shape).reshape(-1, z.shape[-1])
    sigma = np.sqrt(zr.var(axis=0) + EPS)
    xhat = (zr - zr.mean(axis=0)) / sigma
    bracket = gr - gr.mean(axis=0) - xhat * (gr * xhat).mean(axis=0)
    closed = (bracket / sigma).reshape(z.shape)
    out = {"closed_form_error": float(np.abs(closed - dz).max() / np.abs(dz).max()), "std_dz": float(dz.std()),
           "sigma": float(np.median(sigma)), "std_g": float(gr.std()),
           "std_centred": float((gr - gr.mean(axis=0)).std()), "std_bracket": float(bracket.std())}
    with no_grad():
        for kind in ("/T", "sigma", "bn"):
            out[f"logit_std {kind}"] = float(build(args, kind, 1.0, seed)(xb).data.std())
        base = wrn(depth=args.depth, width=args.width, variant="baseline2", bits=args.bits, rng=seed)
        out["logit_std baseline2"] = float(base(xb).data.std())
    return out


def train(args, x, y, seed, kind):
    model = build(args, kind, args.head_temperature, seed)
    hist, probe = short_runs.probed_run(model, x, y, args.steps, args.lr, args.batch, seed)
    n = len(hist["loss"])
    d = diagnose(hist)
    d.update(loss=hist["loss"], acc=hist["acc"], stopped_at=n if n < args.steps else None,
             sigma=np.array(model.head.final.sigma[:n]), mu=np.array(model.head.final.mu[:n]),
             dz_std=probe.series("grad", "z", "std")[:n])
    return d


def main():
    parser = lesson.parser(__doc__, __file__)
    lesson.seeds_flag(parser, full=3, quick=2)
    parser.add_argument("--head-temperature", type=float, default=30, help="T of the heads with ×1/T")
    parser.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine)")
    parser.add_argument("--steps", type=int, default=30, help="SGD steps of every head")
    parser.add_argument("--init-seeds", type=int, default=20, help="initialisations for σ_B(z) at init")
    lesson.model_flags(parser)
    args = parser.parse_args()
    kinds = list(HEADS)
    if args.quick:
        args.steps, args.init_seeds, kinds = min(args.steps, 8), min(args.init_seeds, 3), ["bn", "mean", "/T"]
    T = args.head_temperature
    (x_train, y_train), _ = lesson.load_cifar10(args)
    seeds = args.seeds
    print(f"srelu WRN-{args.depth}-{args.width}, {args.bits}-bit, {len(x_train)} real training images, batch "
          f"{args.batch}, lr {args.lr:g}, seeds {seeds}; {len(kinds)} heads, {args.steps} steps each, T = {T:g}")
    batch = lambda s: np.random.default_rng(s).choice(len(x_train), args.batch, replace=False)
    claims = []

    # ----- 1. the final BN at init ---------------------------------------------------------------
    init = {s: at_init(args, x_train[batch(s)].astype(np.float32), y_train[batch(s)], s) for s in seeds}
    per = lambda key: [init[s][key] for s in seeds]
    print(f"\n1. the final BN at init, one batch per seed; mean [range] over {len(seeds)} seeds (summed-loss convention)")
    print(f"   std dL/dz {short_runs.cell(per('std_dz'))} ≈ median 1/σ_B × std of (g − mean g − x̂·mean(g·x̂))")
    print(f"   std g = (p − y)/(H·W) {short_runs.cell(per('std_g'))}; after removing its batch mean per channel "
          f"{short_runs.cell(per('std_centred'))}; after the σ path too {short_runs.cell(per('std_bracket'))}")
    err = {s: init[s]["closed_form_error"] for s in seeds}
    claims.append(lesson.claim("the final BN's dL/dz = (1/σ)(g − mean g − x̂·mean(g·x̂)): the closed form matches "
                               "autograd (to 1e-4)", {s: err[s] < 1e-4 for s in seeds}, err, assert_in_quick=True))
    keep = {s: init[s]["std_bracket"] / init[s]["std_g"] for s in seeds}
    claims.append(lesson.claim("at init the final BN's two mean terms change g by less than 5 % (std), so its "
                               "backward is nearly a division by σ_B(z)", {s: abs(keep[s] - 1) < 0.05 for s in seeds},
                               keep, unit="× std g"))
    sig = []
    for s in range(args.init_seeds):
        model = build(args, "/T", 1.0, s)
        with no_grad():
            model(x_train[batch(s)].astype(np.float32))
        sig.append(float(np.median(model.head.final.sigma[0])))
    sig = np.array(sig)
    print(f"   σ_B(z) at init, median over the 10 channels, {len(sig)} initialisations: median {np.median(sig):.3g}, "
          f"range {sig.min():.3g}–{sig.max():.3g}")
    ratio = lambda kind: {s: init[s]["logit_std /T"] / init[s][f"logit_std {kind}"] for s in seeds}
    t_div, t_bn, t_06 = ratio("sigma"), ratio("bn"), ratio("baseline2")
    print("   the T that would give the T = 1 net's logits the same std (logit std of T = 1 ÷ logit std of …):")
    print(f"     ×1/σ_B only {short_runs.cell(t_div.values())}; the final BN (centre, then ÷σ_B) {short_runs.cell(t_bn.values())}; "
          f"baseline2, lesson 06's T {short_runs.cell(t_06.values())}")
    claims.append(lesson.claim("at init, dividing z by σ_B(z) alone shrinks the logits like a T below 30 (P2's "
                               "lowest)", {s: t_div[s] < 30 for s in seeds}, t_div, unit=" (T)"))
    claims.append(lesson.claim("at init, the final BN (centring, then division) shrinks the logits like a T "
                               "between 30 and 100", {s: 30 <= t_bn[s] <= 100 for s in seeds}, t_bn, unit=" (T)"))

    # ----- 2. the heads on the same weights and batches ------------------------------------------
    done = {(s, k): train(args, x_train, y_train, s, k) for s in seeds for k in kinds}
    runs = {k: [done[(s, k)] for s in seeds] for k in kinds}
    w = min(30, args.steps)
    early = (0, min(20, args.steps))
    print(f"\n2. {len(kinds)} heads on the same weights and batches per seed, lr {args.lr:g}, {args.steps} steps, "
          f"T = {T:g}; acc: training accuracy of the last {w} steps (chance 10 %); σ_B(z): median over channels, "
          f"then over steps {early[0]}-{early[1]} and over the last {w} steps; mean [range] over seeds")
    print(f"   {'head':16s} {'max loss':>26s} {'acc %':>20s} {'σ_B(z) early':>22s} {'σ_B(z) late':>22s}  verdicts")
    med_sigma = lambda d, a, b: float(np.median(np.median(d["sigma"][a:b], axis=1))) if len(d["sigma"]) > a else np.nan
    for k, rs in runs.items():
        verdicts = ", ".join(f"{v} {sum(r['verdict'] == v for r in rs)}/{len(rs)}"
                             for v in dict.fromkeys(r["verdict"] for r in rs))
        stopped = [r["stopped_at"] for r in rs if r["stopped_at"]]
        print(f"   {HEADS[k][0]:16s} {short_runs.cell(r['max_loss'] for r in rs):>26s} "
              f"{short_runs.cell(100 * r['acc_last'] for r in rs):>20s} "
              f"{short_runs.cell(med_sigma(r, *early) for r in rs):>22s} "
              f"{short_runs.cell(med_sigma(r, len(r['loss']) - w, len(r['loss'])) for r in rs):>22s}  {verdicts}"
              + (f" (stopped at step {', '.join(map(str, stopped))})" if stopped else ""))
    by = lambda k: {s: done[(s, k)] for s in seeds}
    m = by("mean")
    claims.append(lesson.claim("mean-only BN without ×1/T explodes (tinybin.train.divergence)",
                               {s: m[s]["exploded_at"] is not None for s in seeds},
                               {s: m[s]["max_loss"] for s in seeds}, unit=" max loss", assert_in_quick=True))
    if "sigma" in kinds:
        d = by("sigma")
        claims.append(lesson.claim(f"×1/σ_B only (σ_B held constant in the backward) is not learning after "
                                   f"{args.steps} steps", {s: d[s]["verdict"] != "learning" for s in seeds},
                                   {s: 100 * d[s]["acc_last"] for s in seeds}, unit=" %"))
    for k in ("bn", "mean/T", "/T"):
        if k in kinds:
            d = by(k)
            claims.append(lesson.claim(f"{HEADS[k][0]} is learning after {args.steps} steps (acc of the last {w} > "
                                       "15 %)", {s: d[s]["verdict"] == "learning" for s in seeds},
                                       {s: 100 * d[s]["acc_last"] for s in seeds}, unit=" %"))
    for a, b in (("bn", "mean/T"), ("mean/T", "/T"), ("bn", "/T")):
        if a in kinds and b in kinds:
            A, B = by(a), by(b)
            claims.append(lesson.claim(f"{HEADS[a][0]} is ahead of {HEADS[b][0]} after {args.steps} steps (acc of "
                                       f"the last {w})", {s: A[s]["acc_last"] > B[s]["acc_last"] for s in seeds},
                                       {s: 100 * (A[s]["acc_last"] - B[s]["acc_last"]) for s in seeds}, unit=" points"))
    bn = by("bn")
    peak = {s: float(np.median(bn[s]["sigma"][early[0]:early[1]], axis=1).max()) for s in seeds}
    claims.append(lesson.claim(f"the final BN's σ_B(z) rises above 100 (the top of P2's T range) within steps "
                               f"{early[0]}-{early[1]}", {s: peak[s] > 100 for s in seeds}, peak,
                               unit=" (peak of the median over channels)"))

    # ----- figures -----------------------------------------------------------------------------
    title = (f"srelu WRN-{args.depth}-{args.width} ({args.bits}-bit), lr {args.lr:g}: {len(kinds)} heads between z "
             f"and the pool (T = {T:g}), {len(seeds)} seeds (thick: seed {seeds[0]}), {args.steps} steps")
    groups = {HEADS[k][0]: (runs[k], HEADS[k][1], HEADS[k][2]) for k in kinds}
    lesson.save_figure(short_runs.runs_over_seeds_figure(groups, title), args, FIGURES[0])
    fig, axes = lesson.pyplot().subplots(1, 2, figsize=(12, 3.9))
    d0 = bn[seeds[0]]
    for c in range(d0["sigma"].shape[1]):
        axes[0].semilogy(d0["sigma"][:, c], lw=0.8)
    axes[0].axhspan(30, 100, color="tab:green", alpha=0.15, label="P2's T: 30–100")
    axes[0].axhline(10, color="tab:red", ls=":", lw=1, label="T = 10")
    axes[0].set(xlabel="step", ylabel="σ_B(z)", title=f"final BN: σ_B(z) per channel, seed {seeds[0]}")
    for k in kinds:
        for i, r in enumerate(runs[k]):
            axes[1].semilogy(np.median(r["sigma"], axis=1), color=HEADS[k][1], ls=HEADS[k][2], lw=1.2 if i == 0 else 0.7,
                             label=HEADS[k][0] if i == 0 else None)
    axes[1].set(xlabel="step", ylabel="median σ_B(z) over channels", title=f"σ_B(z) under each head, {len(seeds)} seeds")
    for a in axes:
        a.grid(alpha=0.3, which="both")
        a.legend(fontsize=7)
    fig.suptitle(f"{args.steps} steps; σ_B(z) at init over {len(sig)} initialisations: median {np.median(sig):.3g}",
                 fontsize=9)
    lesson.save_figure(fig, args, FIGURES[1])

    fields = ("loss0", "max_loss", "acc_last", "exploded_at", "dead_from", "verdict", "stopped_at", "loss", "acc")
    lesson.finish(args, {"init": {str(s): init[s] for s in seeds}, "sigma_at_init": sig,
                         "heads": {HEADS[k][0]: {str(s): {f: done[(s, k)][f] for f in fields} |
                                                 {"sigma_median": np.median(done[(s, k)]["sigma"], axis=1)}
                                                 for s in seeds} for k in kinds},
                         "steps": args.steps}, claims)


if __name__ == "__main__":
    main()
