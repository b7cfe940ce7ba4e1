"""Lesson 03 — batch norm: forward, backward, batch dependence and inference statistics.

Question
    Batch norm normalises each channel with the statistics of the *current batch*. What does that
    do to one image's output, is the compact backward formula right, and at inference, which
    stored statistics are closer to the truth: moving averages (momentum 0.99, the authors' Keras
    code) or the papers' recalibration (the average of per-batch means and variances over one
    epoch, weights frozen)?

Run
    python lessons/03_batch_norm.py
    (the CIFAR-10 subset shipped in datasets/; --dataset cifar10 downloads the full archive)

Expected output (a full run, 4000 real CIFAR-10 training images, single-threaded: TINYBIN_PARALLEL=0
OPENBLAS_NUM_THREADS=1)
    net: conv 3->16 -> BN -> ReLU -> conv 16->32 /2 -> BN -> ReLU -> conv 32->64 /2 -> BN (random init, frozen)
    1. the same image (train #0, a frog) in three batches, train mode:
       output in batch 'same class 16' vs batch 'random 16': rms difference 0.33 x rms output
       output in batch 'pair' vs batch 'random 16': rms difference 0.44 x rms output
    2. backward on real conv features (4, 4, 4, 16): gradcheck ok (max abs err 9.2e-10);
       compact formula vs autograd through mean/sub/pow/div: max abs diff 2.7e-15
    3. inference statistics vs the truth (each layer's statistics over all 4000 images; 32 batches of 125 per epoch)
       moving averages start at the first batch's statistics; that batch's weight after 1 epoch: 0.99^31 = 0.73; after 10: 0.041
                                 BN1: mean err  var err  BN2: mean err  var err  BN3: mean err  var err
       moving, 1 epoch                  0.0943   0.0678         0.0117   0.0683         0.0184   0.0698
       moving, 10 epochs                0.0050   0.0039         0.0007   0.0041         0.0012   0.0050
       recalibrated, 1 epoch            0.0000   0.0023         0.0002   0.0010         0.0004   0.0022
       (mean err: |mu - mu_true| / sigma_true; var err: |var / var_true - 1|; averaged over channels)
       eval-mode output vs output with the true statistics (rms diff / rms): moving (10 epochs) 0.011, recalibrated 0.0025

Takeaway
    In training mode an image's output depends on which other images share its batch (here by
    a third to a half of its size); in eval mode it does not. The compact BN backward equals the
    chain rule through every primitive to 3e-15 (float64 rounding). Moving averages start at the first batch's
    statistics and then move 1 % per batch, so that one batch of 125 images still weighs 73 %
    after an epoch of 32 batches: its sampling noise leaves them 0.01–0.09 std off in the means
    and ~7 % off in the variances; after 10 epochs, 0.1–0.5 %, which moves the final output by
    1.1 %. Recalibration over a single epoch gets the means exactly (the batches partition the
    data) and the variances to 0.1–0.2 % (it misses only the spread of the batch means); the
    output moves by 0.25 %.
    On full CIFAR-10 (400 steps per epoch) the start is forgotten sooner, but during training
    the moving average also mixes statistics of weights that have since changed; recalibration,
    with the weights frozen, does not.

Try next
    --images 1000 --epochs 30    moving averages after many more steps
    --batch 32                   smaller batches: noisier batch statistics
"""
import numpy as np

import tinybin as tb
import tinybin.functional as F
from tinybin import nn
from tinybin.data import Batches

import lesson

NEEDS_DATA = True
FIGURES = ["batch_dependence.png", "inference_stats.png"]
RESULT_KEYS = ["batch_dependence", "gradcheck", "composed_vs_compact", "inference_stats", "output_error"]


def build_net(rng):
    """Three conv layers, each followed by a per-channel BN (no learned scale or shift)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, rng=rng), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, rng=rng), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1, rng=rng), nn.BatchNorm2d(64))


def bns(net):
    return [m for m in net if isinstance(m, nn.BatchNorm2d)]


def true_statistics(net, x, chunk=250):
    """Each BN's input mean and (biased) variance over *all* of x, layer by layer.

    Layer k's truth is taken with layers < k normalised by their own truth, i.e. what the
    network would compute with perfect inference statistics.
    """
    h = x
    stats = []
    for m in net:
        if isinstance(m, nn.BatchNorm2d):
            flat = h.reshape(-1, h.shape[-1]).astype(np.float64)   # N*H*W, C
            mean, var = flat.mean(axis=0), flat.var(axis=0)
            stats.append((mean, var))
            h = ((h - mean) / np.sqrt(var + m.eps)).astype(np.float32)
        else:
            with tb.no_grad():
                h = np.concatenate([m(tb.Tensor(h[i:i + chunk])).data for i in range(0, len(h), chunk)])
    return stats


def eval_output(net, x, stats):
    """The network's output in eval mode, every BN using its `stats` ("moving" or "recalibrated")."""
    for m in bns(net):
        m.inference_stats = stats
    net.eval()
    with tb.no_grad():
        out = net(tb.Tensor(x)).data
    net.train()
    return out


def composed_batch_norm(x, w, b, eps=1e-5):
    """BN written with primitive ops only: autograd then derives the backward by the chain rule."""
    mean = x.mean(axis=(0, 1, 2), keepdims=True)               # 1,1,1,C
    xc = x - mean                                              # N,H,W,C
    var = (xc * xc).mean(axis=(0, 1, 2), keepdims=True)        # 1,1,1,C
    return xc / (var + eps) ** 0.5 * w + b


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--images", type=int, default=4000, help="training images used (the population)")
    parser.add_argument("--batch", type=int, default=125, help="batch size for the statistics passes")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of moving-average updates")
    args = parser.parse_args()
    if args.quick:
        args.images, args.epochs = min(args.images, 1000), min(args.epochs, 3)
    (x_train, y_train), _ = lesson.load_cifar10(args)
    names = lesson.CIFAR10_CLASSES
    x = x_train[:args.images].astype(np.float32)                  # raw pixels 0..255, N,32,32,3
    y = y_train[:args.images]
    rng = np.random.default_rng(args.seed)
    net = build_net(rng)
    print("net: conv 3->16 -> BN -> ReLU -> conv 16->32 /2 -> BN -> ReLU -> conv 32->64 /2 -> BN "
          "(random init, frozen)")
    results = {}

    # ----- 1. one image, three batches --------------------------------------------------------
    same_class = np.flatnonzero(y == y[0])[1:16]                   # 15 more of image 0's class
    others = rng.choice(np.arange(1, len(x)), 15, replace=False)   # 15 random images
    batches = {"random 16": np.r_[0, others], "same class 16": np.r_[0, same_class], "pair": np.r_[0, others[:1]]}
    net.train()
    outs = {}
    with tb.no_grad():
        for k, idx in batches.items():
            outs[k] = net(tb.Tensor(x[idx])).data[0]               # image 0's output, 8,8,64
    ref = outs["random 16"]
    rms = float(np.sqrt(np.mean(ref ** 2)))
    print(f"1. the same image (train #0, a {names[y[0]]}) in three batches, train mode:")
    dep = {}
    for k in ("same class 16", "pair"):
        d = float(np.sqrt(np.mean((outs[k] - ref) ** 2)) / rms)
        dep[k] = d
        print(f"   output in batch '{k}' vs batch 'random 16': rms difference {d:.2f} x rms output")
    results["batch_dependence"] = dep

    # ----- 2. the backward pass, checked two ways ---------------------------------------------
    with tb.no_grad():
        feats = next(iter(net))(tb.Tensor(x[:4])).data[:, 10:14, 10:14, :].astype(np.float64)  # 4,4,4,16 real features
    C = feats.shape[-1]
    w0, b0 = 1 + 0.1 * rng.standard_normal(C), 0.1 * rng.standard_normal(C)
    args_t = [tb.Tensor(a, requires_grad=True) for a in (feats, w0, b0)]
    report = tb.gradcheck(lambda a, w, b: F.batch_norm(a, w, b), *args_t, seed=args.seed)
    max_abs = max(r.max_abs_error for r in report)
    G = rng.standard_normal(feats.shape)                           # a random upstream gradient
    grads = {}
    for name, fn in (("compact", lambda a, w, b: F.batch_norm(a, w, b)), ("composed", composed_batch_norm)):
        ts = [tb.Tensor(a, requires_grad=True) for a in (feats, w0, b0)]
        fn(*ts).backward(G)
        grads[name] = [t.grad for t in ts]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(grads["compact"], grads["composed"]))
    print(f"2. backward on real conv features {feats.shape}: gradcheck {'ok' if report.ok else 'FAILED'} "
          f"(max abs err {max_abs:.1e});")
    print(f"   compact formula vs autograd through mean/sub/pow/div: max abs diff {diff:.1e}")
    results["gradcheck"] = {"ok": report.ok, "max_abs_error": max_abs}
    results["composed_vs_compact"] = diff

    # ----- 3. inference statistics ------------------------------------------------------------
    truth = true_statistics(net, x)
    data = Batches(x_train[:args.images], y, batch_size=args.batch, shuffle=True, seed=args.seed)
    steps_per_epoch = len(data)

    def errors():
        """Per BN: mean |μ − μ_true| / σ_true and mean |σ² / σ²_true − 1| over channels."""
        out = []
        for m, (mu, var) in zip(bns(net), truth):
            est_mu, est_var = m.inference_mean_var()
            out.append((float(np.mean(np.abs(est_mu - mu) / np.sqrt(var))),
                        float(np.mean(np.abs(est_var / var - 1)))))
        return out

    table = {}
    net.train()
    with tb.no_grad():
        for epoch in range(args.epochs):                           # moving averages, momentum 0.99
            for xb, _ in data.epoch(epoch):
                net(tb.Tensor(xb))
            if epoch == 0:
                table["moving, 1 epoch"] = errors()
        table[f"moving, {args.epochs} epochs"] = errors()
        for m in bns(net):                                         # recalibration: one epoch, plain average
            m.start_recalibration()
        for xb, _ in data.epoch(args.epochs):
            net(tb.Tensor(xb))
        for m in bns(net):
            m.finish_recalibration()
        for m in bns(net):
            m.inference_stats = "recalibrated"
        table["recalibrated, 1 epoch"] = errors()
    recal = [(m.calib_mean, m.calib_var) for m in bns(net)]

    print(f"3. inference statistics vs the truth (each layer's statistics over all {args.images} images; "
          f"{steps_per_epoch} batches of {args.batch} per epoch)")
    print(f"   moving averages start at the first batch's statistics; that batch's weight after 1 epoch: "
          f"0.99^{steps_per_epoch - 1} = {0.99 ** (steps_per_epoch - 1):.2f}; after {args.epochs}: "
          f"{0.99 ** (steps_per_epoch * args.epochs - 1):.3f}")
    print("   " + " " * 24 + "".join(f"  BN{i + 1}: mean err  var err" for i in range(len(truth))))
    for k, errs in table.items():
        print(f"   {k:24s}" + "".join(f"  {m:13.4f} {v:8.4f}" for m, v in errs))
    print("   (mean err: |mu - mu_true| / sigma_true; var err: |var / var_true - 1|; averaged over channels)")
    results["inference_stats"] = {k: [{"mean_err": m, "var_err": v} for m, v in errs] for k, errs in table.items()}

    # What each set of statistics does to the network's output at inference (500 of the images)
    for m, (mu, var) in zip(bns(net), truth):                     # the truth, stored as if recalibrated
        m.calib_mean, m.calib_var = mu, var
    exact = eval_output(net, x[:500], "recalibrated")
    for m, (mu, var) in zip(bns(net), recal):
        m.calib_mean, m.calib_var = mu, var
    out_err = {}
    for mode in ("moving", "recalibrated"):
        got = eval_output(net, x[:500], mode)
        out_err[mode] = float(np.sqrt(np.mean((got - exact) ** 2)) / np.sqrt(np.mean(exact ** 2)))
    print(f"   eval-mode output vs output with the true statistics (rms diff / rms): "
          f"moving ({args.epochs} epochs) {out_err['moving']:.3f}, recalibrated {out_err['recalibrated']:.4f}")
    results["output_error"] = out_err

    # ----- figures ----------------------------------------------------------------------------
    plt = lesson.pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for k, mk in (("same class 16", "."), ("pair", "x")):
        ax.scatter(ref.ravel(), outs[k].ravel(), s=3, marker=mk, alpha=0.5, label=f"batch '{k}'")
    lim = [float(ref.min()), float(ref.max())]
    ax.plot(lim, lim, "k--", lw=1, label="same output")
    ax.set_xlabel("image #0's output in batch 'random 16'")
    ax.set_ylabel("image #0's output in another batch")
    ax.set_title("one image, different batches (train mode)")
    ax.legend(markerscale=4)
    lesson.save_figure(fig, args, FIGURES[0])

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    pos = np.arange(len(truth))
    width = 0.8 / len(table)
    for j, (k, errs) in enumerate(table.items()):
        for a, col in zip(axes, range(2)):
            a.bar(pos + (j - (len(table) - 1) / 2) * width, [e[col] for e in errs], width, label=k)
    for a, title in zip(axes, ("mean: |μ − μ_true| / σ_true", "variance: |σ²/σ²_true − 1|")):
        a.set_yscale("log")
        a.set_xticks(pos, [f"BN{i + 1}" for i in pos])
        a.set_title(title)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("inference statistics vs the population's", y=1.02)
    lesson.save_figure(fig, args, FIGURES[1])
    lesson.finish(args, results)


if __name__ == "__main__":
    main()
