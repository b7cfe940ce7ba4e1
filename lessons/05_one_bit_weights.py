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
OPENBLAS_NUM_THREADS=1)
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
    3. one real batch through WRN-8-1, 1-bit: loss with F.binarize(W, c) 2.454052, with c * ste_sign(W) 2.454052 (same forward)
       layer                    c       |dW| binarize   |dW| c*ste_sign   ratio
       stem                   0.2722     2.5607e-01       6.9694e-02   0.2722
       stage1.block0.conv_a   0.1179     2.9967e-01       3.5316e-02   0.1179
       ...
       stage3.block0.conv_b   0.0589     6.0817e-01       3.5837e-02   0.0589
       head.conv              0.1768     2.9240e-01       5.1690e-02   0.1768
    4. 30 SGD steps (lr 0.1, batch 125, real images), fraction of latent weights whose sign flipped:
       step   flip binarize   flip c*ste_sign   loss binarize   loss c*ste_sign
          1        1.91e-03          2.14e-04           2.415             2.415
          2        2.26e-03          2.27e-04           2.322             2.378
          ...
         30        2.15e-03          2.41e-04           1.904             2.068
       mean flip ratio per step: binarize 2.52e-03, c*ste_sign 4.22e-04 (6x fewer)
    5. WRN-20-10: 26,737,120 conv weights; float32 106,948,480 bytes = 106.9 MB; packed bits
       3,342,140 bytes = 3.34 MB (3.19 MiB), 32x smaller; unpacked == c*sign(W): True

Takeaway
    ±c has the He-init standard deviation, so a 1-bit layer keeps the signal's scale (std 1.22
    vs 1.25 with Gaussian weights; plain ±1 would multiply it by 1/c ≈ 17). The scale must sit
    inside the op whose backward is the identity (F.binarize): written as c·ste_sign(W), the
    forward is identical but autograd multiplies every latent gradient by exactly c (0.03–0.27
    in WRN-20-4), which quietly divides each layer's learning rate: 6× fewer sign flips and a
    slower-falling loss here (2.068 against 1.904 after 30 steps). Stored as bits, WRN-20-10
    takes 3.34 MB instead of 107 MB.

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

    # ----- 3. the c * ste_sign pitfall, in numbers ---------------------------------------------
    xb, yb = x_train[:args.batch].astype(np.float32), y_train[:args.batch]
    grads, losses = {}, {}
    for kind in ("binarize", "pitfall"):
        model = wrn(depth=args.depth, width=args.width, bits=1, rng=args.seed)
        if kind == "pitfall":
            use_pitfall(model)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        grads[kind] = {name: (conv.multiplier, conv.weight.grad) for name, conv in model.convs()}
        losses[kind] = loss.item()
    print(f"3. one real batch through WRN-{args.depth}-{args.width}, 1-bit: loss with F.binarize(W, c) "
          f"{losses['binarize']:.6f}, with c * ste_sign(W) {losses['pitfall']:.6f} (same forward)")
    print("   layer                    c       |dW| binarize   |dW| c*ste_sign   ratio")
    ratios = {}
    for name, (c, g) in grads["binarize"].items():
        gp = grads["pitfall"][name][1]
        ratios[name] = float(np.linalg.norm(gp) / np.linalg.norm(g))
        print(f"   {name:22s} {c:.4f}   {np.linalg.norm(g):12.4e}   {np.linalg.norm(gp):14.4e}   {ratios[name]:.4f}")
    results["pitfall_grad_ratio"] = ratios

    # ----- 4. sign flips per SGD step, right vs pitfall ----------------------------------------
    data = Batches(x_train, y_train, batch_size=args.batch, shuffle=True, seed=args.seed)
    logs = {}
    for kind in ("binarize", "pitfall"):
        model = wrn(depth=args.depth, width=args.width, bits=1, rng=args.seed)
        if kind == "pitfall":
            use_pitfall(model)
        logs[kind] = train_flips(model, data, args.steps, args.lr)
    print(f"4. {args.steps} SGD steps (lr {args.lr}, batch {args.batch}, real images), "
          "fraction of latent weights whose sign flipped:")
    print("   step   flip binarize   flip c*ste_sign   loss binarize   loss c*ste_sign")
    for i in range(args.steps):
        if i < 3 or i == args.steps - 1 or (i + 1) % 5 == 0:
            print(f"   {i + 1:4d}   {logs['binarize']['flip'][i]:13.2e}   {logs['pitfall']['flip'][i]:15.2e}"
                  f"   {logs['binarize']['loss'][i]:13.3f}   {logs['pitfall']['loss'][i]:15.3f}")
    mean_flip = {k: float(np.mean(v["flip"])) for k, v in logs.items()}
    fewer = mean_flip["binarize"] / max(mean_flip["pitfall"], 1e-12)
    print(f"   mean flip ratio per step: binarize {mean_flip['binarize']:.2e}, "
          f"c*ste_sign {mean_flip['pitfall']:.2e} ({fewer:.0f}x fewer)")
    results["flips"] = {"mean": mean_flip, "per_step": {k: v["flip"] for k, v in logs.items()},
                        "loss": {k: v["loss"] for k, v in logs.items()}}

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
    for kind, label in (("binarize", "F.binarize(W, c)"), ("pitfall", "c · ste_sign(W)")):
        axes[0].semilogy(steps, np.maximum(logs[kind]["flip"], 1e-7), "o-", ms=3, label=label)
        axes[1].plot(steps, logs[kind]["loss"], "o-", ms=3, label=label)
    axes[0].set_title("fraction of latent weights whose sign flipped")
    axes[1].set_title("training loss")
    for a in axes:
        a.set_xlabel("SGD step")
        a.legend()
        a.grid(alpha=0.3)
    fig.suptitle(f"WRN-{args.depth}-{args.width}, 1-bit, lr {args.lr}, real CIFAR-10 batches of {args.batch}", y=1.03)
    lesson.save_figure(fig, args, FIGURES[0])
    lesson.finish(args, results)


if __name__ == "__main__":
    main()
