"""Lesson 05 — one bit per weight: latent weights, sign, the He multiplier, and a gradient pitfall.

Question
    A 1-bit layer convolves with W_b = c·sign(W), c = sqrt(2 / (k·k·C_in)), while SGD trains the
    full-precision *latent* weights W. Why that c, what should sign(0) be, what goes wrong if
    the network is written as `c * ste_sign(W)`, how many weights flip sign per SGD step, and
    what does storing only the bits save?

Run
    python lessons/05_one_bit_weights.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run, real CIFAR-10 training images, single-threaded: TINYBIN_PARALLEL=0
OPENBLAS_NUM_THREADS=1; 2 min 40 s on a 2-core machine shared with other runs)
    1. latent w            [-0.7, -1e-09, 0, 1e-09, 0.3]
       np.sign(w)          [-1, -1, 0, 1, 1]   <- a third value at 0
       F.binarize(w, 1.0)  [-1, -1, 1, 1, 1]   <- sign(0) = +1: always two values
    2. c = sqrt(2 / (k*k*C_in)) in WRN-20-4 (1-bit, 4,280,512 conv weights):
       k x k x C_in = 3x3x3     c = 0.2722  (1 layers, e.g. stem)
       k x k x C_in = 3x3x64    c = 0.0589  (7 layers, e.g. stage1.block0.conv_a)
       k x k x C_in = 3x3x128   c = 0.0417  (6 layers, e.g. stage2.block0.conv_b)
       k x k x C_in = 3x3x256   c = 0.0295  (5 layers, e.g. stage3.block0.conv_b)
       k x k x C_in = 1x1x256   c = 0.0884  (1 layers, e.g. head.conv)
       on real images, output std of stage1.block0.conv_a (c = 0.0589): He-normal W 1.25, c*sign(W) 1.22, sign(W) 20.63
    3. one real batch through WRN-8-1, 1-bit (seed 0): loss with F.binarize(W, c) 2.454051, with c * ste_sign(W) 2.454051 (same forward)
       layer                    c       |dW| binarize   |dW| c*ste_sign   ratio
       stem                   0.2722     2.5606e-01       6.9691e-02   0.2722
       ...
       head.conv              0.1768     2.9240e-01       5.1690e-02   0.1768
    CLAIM |dW| with c*ste_sign / |dW| with binarize = c in every layer (to 1e-5): holds in 5 of 5 seeds  (max |ratio - c| 1e-8 to 2e-8)
    4. 30 SGD steps (lr 0.1, batch 125, real images), fraction of latent weights whose sign flipped:
       seed   mean flip binarize   mean flip c*ste_sign   fewer   loss@30 binarize   loss@30 c*ste_sign
          0             2.50e-03               4.24e-04    5.9x               1.915                 2.066
          ...
          4             2.51e-03               3.93e-04    6.4x               1.991                 2.098
    CLAIM c*ste_sign flips fewer signs per step than binarize: holds in 5 of 5 seeds  (mean 6.26x, range 5.89-6.64x)
    CLAIM c*ste_sign ends with a higher loss after 30 steps: holds in 5 of 5 seeds  (mean +0.146, range 0.106-0.192)
    5. WRN-20-10: 26,737,120 conv weights; float32 106,948,480 bytes = 106.9 MB; packed bits
       3,342,140 bytes = 3.34 MB (3.19 MiB), 32x smaller; unpacked == c*sign(W): True

Takeaway
    ±c has the He-init standard deviation, so a 1-bit layer keeps the signal's scale (std 1.22
    vs 1.25 with Gaussian weights; plain ±1 would multiply it by 1/c ≈ 17). The scale must sit
    inside the op whose backward is the identity (F.binarize): written as c·ste_sign(W), the
    forward is identical but autograd multiplies every latent gradient by exactly c (0.03–0.27
    in WRN-20-4), which quietly divides each layer's learning rate: 5.9-6.6x fewer sign flips per
    step and a higher loss after 30 steps (by 0.11-0.19, mean 0.15), in 5 of 5 seeds. Stored as
    bits, WRN-20-10 takes 3.34 MB instead of 107 MB. The full run (5 seeds) takes 3 minutes
    single-threaded; --quick (2 seeds, 8 steps) about 30 s.

Try next
    --steps 100 --lr 0.05     longer runs, another learning rate
    --width 2                 a wider network for the flip-ratio runs
"""
import numpy as np

import tinybin as tb
import tinybin.functional as F
from tinybin.data import Batches
from tinybin.models import conv_weight_count, wrn
from tinybin.ops.binarize import binarize_forward, pack_bits, unpack_bits
from tinybin.optim import SGD

import lesson

NEEDS_DATA = True
FIGURES = ["flip_ratio.png"]
RESULT_KEYS = ["sign", "multipliers", "signal_std", "pitfall_grad_ratio", "flips", "storage"]


def pitfall_effective_weight(conv):
    """The mistake: c · ste_sign(W). Same forward as F.binarize(W, c); the backward multiplies by c."""
    return conv.multiplier * F.binarize(conv.weight, 1.0)


def use_pitfall(model):
    """Rebind every conv's effective_weight to the pitfall version (for this model only)."""
    for _, conv in model.convs():
        conv.effective_weight = lambda conv=conv: pitfall_effective_weight(conv)


def latent_signs(model):
    return [conv.weight.data >= 0 for _, conv in model.convs()]


def train_flips(model, data, steps, lr):
    """SGD on the latent weights; per step: loss, accuracy and the fraction of signs that flipped."""
    opt = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    signs = latent_signs(model)
    total = sum(s.size for s in signs)
    log = {"loss": [], "acc": [], "flip": []}
    it = (b for epoch in range(10 ** 6) for b in data.epoch(epoch))
    for _ in range(steps):
        xb, yb = next(it)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        new = latent_signs(model)
        flipped = sum(int(np.count_nonzero(a != b)) for a, b in zip(signs, new))
        signs = new
        log["loss"].append(loss.item())
        log["acc"].append(float(np.mean(np.argmax(logits.data, 1) == yb)))
        log["flip"].append(flipped / total)
    return log


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--steps", type=int, default=30, help="SGD steps of the flip-ratio runs")
    parser.add_argument("--batch", type=int, default=125, help="batch size")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate (momentum 0.9, weight decay 5e-4)")
    parser.add_argument("--depth", type=int, default=8, help="depth of the WRN trained in part 4 (6n+2)")
    parser.add_argument("--width", type=int, default=1, help="width k of that WRN")
    lesson.seeds_flag(parser, full=5, quick=2)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.batch = min(args.steps, 8), min(args.batch, 50)
    (x_train, y_train), _ = lesson.load_cifar10(args)
    results = {}

    # ----- 1. sign with sign(0) = +1 ----------------------------------------------------------
    w = np.array([-0.7, -1e-9, 0.0, 1e-9, 0.3], np.float32)
    bits_np = np.sign(w)
    bits_tb = binarize_forward(w, 1.0)[0]
    show = lambda a: "[" + ", ".join(f"{v:g}" for v in a) + "]"  # noqa: E731
    print(f"1. latent w            {show(w)}")
    print(f"   np.sign(w)          {show(bits_np)}   <- a third value at 0")
    print(f"   F.binarize(w, 1.0)  {show(bits_tb)}   <- sign(0) = +1: always two values")
    results["sign"] = {"w": w, "np_sign": bits_np, "binarize": bits_tb}

    # ----- 2. the He multiplier c per layer of WRN-20-4 ---------------------------------------
    big = wrn(depth=20, width=4, bits=1, rng=args.seed)
    rows = {}
    for name, conv in big.convs():
        k, _, c_in, c_out = conv.weight.shape
        key = f"{k}x{k}x{c_in}"
        rows.setdefault(key, {"c": conv.multiplier, "formula": float(np.sqrt(2 / (k * k * c_in))), "layers": []})
        rows[key]["layers"].append(name)
    print("2. c = sqrt(2 / (k*k*C_in)) in WRN-20-4 (1-bit, "
          f"{conv_weight_count(big):,} conv weights):")
    for key, r in rows.items():
        print(f"   k x k x C_in = {key:9s} c = {r['c']:.4f}  ({len(r['layers'])} layers, e.g. {r['layers'][0]})")
    results["multipliers"] = {k: {"c": r["c"], "layers": len(r["layers"])} for k, r in rows.items()}

    # Why c: ±c has the std of He-normal weights, so a layer keeps the signal's scale.
    x = x_train[:64].astype(np.float32)
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))           # standardised real images
    h = np.maximum(F.conv2d(tb.Tensor(x), big.stem.weight.detach(), padding=1).data, 0)  # N,32,32,64
    conv = dict(big.convs())["stage1.block0.conv_a"]
    W = conv.weight.data
    stds = {}
    for label, wt in (("He-normal W", W), ("c*sign(W)", binarize_forward(W, conv.multiplier)[0]),
                      ("sign(W)", binarize_forward(W, 1.0)[0])):
        stds[label] = float(F.conv2d(tb.Tensor(h), tb.Tensor(wt), padding=1).data.std())
    print(f"   on real images, output std of stage1.block0.conv_a (c = {conv.multiplier:.4f}): " +
          ", ".join(f"{k} {v:.2f}" for k, v in stds.items()))
    results["signal_std"] = stds
    del big

    # ----- 3. the c * ste_sign pitfall, in numbers (every seed; the table shows the first) ----------
    xb, yb = x_train[:args.batch].astype(np.float32), y_train[:args.batch]
    ratios, ratio_ok, ratio_err = {}, {}, {}
    for seed in args.seeds:
        grads, losses = {}, {}
        for kind in ("binarize", "pitfall"):
            model = wrn(depth=args.depth, width=args.width, bits=1, rng=seed)
            if kind == "pitfall":
                use_pitfall(model)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            grads[kind] = {name: (conv.multiplier, conv.weight.grad) for name, conv in model.convs()}
            losses[kind] = loss.item()
        ratios[seed] = {}
        for name, (c, g) in grads["binarize"].items():
            ratios[seed][name] = float(np.linalg.norm(grads["pitfall"][name][1]) / np.linalg.norm(g))
        ratio_err[seed] = max(abs(ratios[seed][n] - c) for n, (c, _) in grads["binarize"].items())
        ratio_ok[seed] = ratio_err[seed] < 1e-5
        if seed != args.seeds[0]:
            continue
        print(f"3. one real batch through WRN-{args.depth}-{args.width}, 1-bit (seed {seed}): loss with "
              f"F.binarize(W, c) {losses['binarize']:.6f}, with c * ste_sign(W) {losses['pitfall']:.6f} (same forward)")
        print("   layer                    c       |dW| binarize   |dW| c*ste_sign   ratio")
        for name, (c, g) in grads["binarize"].items():
            gp = grads["pitfall"][name][1]
            print(f"   {name:22s} {c:.4f}   {np.linalg.norm(g):12.4e}   {np.linalg.norm(gp):14.4e}"
                  f"   {ratios[seed][name]:.4f}")
    claims = [lesson.claim("|dW| with c*ste_sign / |dW| with binarize = c in every layer (to 1e-5)",
                           holds=ratio_ok, values=ratio_err, unit=" max |ratio - c|", assert_in_quick=True)]
    results["pitfall_grad_ratio"] = {str(s): r for s, r in ratios.items()}

    # ----- 4. sign flips per SGD step, right vs pitfall (every seed: initial weights, batch order) --
    print(f"4. {args.steps} SGD steps (lr {args.lr}, batch {args.batch}, real images), "
          "fraction of latent weights whose sign flipped:")
    logs, fewer, gap = {}, {}, {}
    for seed in args.seeds:
        data = Batches(x_train, y_train, batch_size=args.batch, shuffle=True, seed=seed)
        logs[seed] = {}
        for kind in ("binarize", "pitfall"):
            model = wrn(depth=args.depth, width=args.width, bits=1, rng=seed)
            if kind == "pitfall":
                use_pitfall(model)
            logs[seed][kind] = train_flips(model, data, args.steps, args.lr)
        lg = logs[seed]
        if seed == args.seeds[0]:
            print(f"   seed {seed}:")
            print("   step   flip binarize   flip c*ste_sign   loss binarize   loss c*ste_sign")
            for i in range(args.steps):
                if i < 3 or i == args.steps - 1 or (i + 1) % 5 == 0:
                    print(f"   {i + 1:4d}   {lg['binarize']['flip'][i]:13.2e}   {lg['pitfall']['flip'][i]:15.2e}"
                          f"   {lg['binarize']['loss'][i]:13.3f}   {lg['pitfall']['loss'][i]:15.3f}")
            print("   seed   mean flip binarize   mean flip c*ste_sign   fewer   "
                  f"loss@{args.steps} binarize   loss@{args.steps} c*ste_sign")
        mean_flip = {k: float(np.mean(v["flip"])) for k, v in lg.items()}
        fewer[seed] = mean_flip["binarize"] / max(mean_flip["pitfall"], 1e-12)
        gap[seed] = lg["pitfall"]["loss"][-1] - lg["binarize"]["loss"][-1]
        print(f"   {seed:4d}   {mean_flip['binarize']:18.2e}   {mean_flip['pitfall']:20.2e}   {fewer[seed]:4.1f}x"
              f"   {lg['binarize']['loss'][-1]:17.3f}   {lg['pitfall']['loss'][-1]:19.3f}")
    claims.append(lesson.claim("c*ste_sign flips fewer signs per step than binarize (mean over the steps)",
                               holds={s: fewer[s] > 1 for s in args.seeds}, values=fewer, unit="×"))
    claims.append(lesson.claim(f"c*ste_sign ends with a higher loss after {args.steps} steps",
                               holds={s: gap[s] > 0 for s in args.seeds}, values=gap,
                               unit=" loss(c*ste_sign) - loss(binarize)"))
    results["flips"] = {str(s): {"mean": {k: float(np.mean(v["flip"])) for k, v in lg.items()},
                                 "per_step": {k: v["flip"] for k, v in lg.items()},
                                 "loss": {k: v["loss"] for k, v in lg.items()}} for s, lg in logs.items()}

    # ----- 5. storage: the bits of WRN-20-10 ----------------------------------------------------
    big = wrn(depth=20, width=10, bits=1, rng=args.seed)
    n = conv_weight_count(big)
    packed, exact = 0, True
    for _, conv in big.convs():
        bits = pack_bits(conv.weight.data)                         # 8 weights per byte
        packed += bits.nbytes
        back = unpack_bits(bits, conv.weight.shape, conv.multiplier)
        exact &= bool(np.array_equal(back, binarize_forward(conv.weight.data, conv.multiplier)[0]))
    float_bytes = 4 * n
    print(f"5. WRN-20-10: {n:,} conv weights; float32 {float_bytes:,} bytes = {float_bytes / 1e6:.1f} MB; "
          f"packed bits {packed:,} bytes = {packed / 1e6:.2f} MB ({packed / 2 ** 20:.2f} MiB), "
          f"{float_bytes / packed:.0f}x smaller; unpacked == c*sign(W): {exact}")
    results["storage"] = {"weights": n, "float32_bytes": float_bytes, "packed_bytes": packed,
                          "ratio": float_bytes / packed, "round_trip_exact": exact}

    plt = lesson.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = np.arange(1, args.steps + 1)
    for kind, label, color in (("binarize", "F.binarize(W, c)", "C0"), ("pitfall", "c · ste_sign(W)", "C1")):
        for i, seed in enumerate(args.seeds):
            lg = logs[seed][kind]
            lab = label if i == 0 else None
            axes[0].semilogy(steps, np.maximum(lg["flip"], 1e-7), "o-", ms=2, lw=1, color=color, alpha=0.6, label=lab)
            axes[1].plot(steps, lg["loss"], "o-", ms=2, lw=1, color=color, alpha=0.6, label=lab)
    axes[0].set_title("fraction of latent weights whose sign flipped")
    axes[1].set_title("training loss")
    for a in axes:
        a.set_xlabel("SGD step")
        a.legend()
        a.grid(alpha=0.3)
    fig.suptitle(f"WRN-{args.depth}-{args.width}, 1-bit, lr {args.lr}, real CIFAR-10 batches of {args.batch}; "
                 f"{len(args.seeds)} seeds, one line each", y=1.03)
    lesson.save_figure(fig, args, FIGURES[0])
    lesson.finish(args, results, claims)


if __name__ == "__main__":
    main()
