"""Lesson 11 — the authors' 1-bit model: 26.7 M weights, 3.34 MB, 96 % on CIFAR-10.

Question
    McDonnell et al. released their Keras 1-bit WRN-20-10 for CIFAR-10. Does tinybin's own
    `wrn(20, 10, variant="baseline2", bits=1, padding="tf-same")`, given nothing but the file's
    bits and BN statistics, classify CIFAR-10 as well as the authors say (96.25 % on the full
    test set)? Is every layer really just two values ±c? How small is the model once stored one
    bit per weight — and does a conv then need any multiplication at all?

Run
    python lessons/11_authors_model.py
    (the model is datasets/mcdonnell/CIFAR10_allparams.mat, shipped with tinybin; the test images
    are the 1000 of the shipped CIFAR-10 subset)

Expected output (a full run, 3.2 minutes: the 1000 exact test images of the shipped subset)
    1. import of CIFAR10_allparams.mat: 20 conv layers (stem, 18 block convs, 1×1 head), 21 BN
       layers, 26,737,120 weights, 10 classes
    2. every layer holds exactly two values ±c, c = sqrt(2/(KH·KW·C_in)):
         stem                  (3, 3, 3, 160)     c = 0.27217   values -0.27217 +0.27217   49.1 % of bits are 1
         stage1.block0.conv_a  (3, 3, 160, 160)   c = 0.03727   values -0.03727 +0.03727   46.8 % of bits are 1
         ...
         stage3.block2.conv_b  (3, 3, 640, 640)   c = 0.01863   values -0.01863 +0.01863   42.7 % of bits are 1
         head.conv             (1, 1, 640, 10)    c = 0.05590   values -0.05590 +0.05590   53.4 % of bits are 1
       input BN (learned g, o; no ReLU): gamma (0.671, 0.696, 0.614), beta (0.245, 0.220, 0.236),
       mean (125.7, 123.6, 116.7), std (65.5, 64.9, 68.3)
    3. packed: 3.41 MB (3.34 MB of bits + 0.06 MB of BN statistics) against 106.95 MB as float32
       weights (31×); reloaded: identical logits on 10 images
    4. the stem conv by additions and subtractions only (then ×c once per output): max |difference|
       2.9e-06 of outputs up to 9
    5. one image: 3.66 G additions, 2.97 M multiplications (1.89 M in BN's ×1/σ, which absorbs the
       c of the conv before it; the rest ×c once per output and the pools), 1.9 M comparisons
       (ReLU), 6,893 square roots (BN's sqrt(σ² + ε), one per channel: constants at inference,
       computed once, not per image)
       without BN (srelu, same size): 1.95 M multiplications, since every conv output still
       needs its ×c: removing BN saves 1.02 M, 34 % of them
    6. accuracy 96.30 % (963/1000) ± 0.60 (binomial standard error) at 5.8 images/s (one thread:
       TINYBIN_PARALLEL=0 OPENBLAS_NUM_THREADS=1, a machine shared with other runs; 12.5–14.3 on
       quieter days)
       the authors, 10,000 test images: 96.25 % (± 0.19), 0.08 standard errors of ours away:
       consistent; an independent implementation: 96.30 % on the 1000 shipped test images
    With --quick (the first 200 images): 95.50 % (191/200) ± 1.47, 0.51 standard errors away.

Takeaway
    With the padding of the authors' Keras code (TF "same"), BN eps 1e-5 and the pad-excluding
    average-pool shortcut, tinybin's WRN runs the authors' network: on these 1000 images it gets
    963 right, as an independent implementation does, and 96.30 % is consistent with the
    authors' 96.25 % on all 10,000 (1000 images measure an accuracy to ± 0.6 points, so
    "consistent" is all they can say, not "exactly the same"). Every conv layer is c·(±1), so
    26.7 M weights fit in 3.34 MB, and a conv output is a sum and difference of inputs,
    multiplied once by c. Removing BN saves about a third of the multiplications (1.02 M of
    2.97 M), not most of them: without BN each conv output still pays its ×c, which BN's ×1/σ
    absorbed; what BN-free variants also remove is BN's statistics and its per-element pass.
    BN's square roots are no cost at inference: σ² is stored, so sqrt(σ² + ε) is a constant
    (`python -m tinybin export --report --arch 20-10` lists them anyway).
    The input BN's g and o above are learned (not 1 and 0). P2 says such a BN "is equivalent
    to preprocessing raw data" (§III.A) only "provided that the shift and scale factors are not
    learned"; in the authors' released model they are, as in tinybin's default input_norm="bn".

Try next
    --quick                       200 test images instead of 1000
    --images 1000                 how many test images to evaluate
    --mcdonnell cifar100          the authors' CIFAR-100 model (downloaded on first use; test
                                  it with `python -m tinybin evaluate --mcdonnell cifar100`)
"""
import math
import sys
import time
from pathlib import Path

import numpy as np

from tinybin import no_grad
from tinybin.embedded import conv2d_addsub, op_counts, totals
from tinybin.export import load_packed, pack, save_packed
from tinybin.models import wrn
from tinybin.train import evaluate
from tinybin.zoo import load_mcdonnell, mcdonnell_file

import lesson

NEEDS_DATA = True
FIGURES = ["layers.png"]
RESULT_KEYS = ["layers", "weights", "two_values", "packed_bytes", "float32_bytes", "round_trip_exact",
               "addsub_stem_error", "ops", "accuracy", "accuracy_se", "images", "images_per_s"]
AUTHORS_ACCURACY = 0.9625  # the released CIFAR-10 model on the full 10,000-image test set (the authors' figure)


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--mcdonnell", default="cifar10",
                        help="the released model: cifar10 (shipped), cifar100 (downloaded on first use) or a .mat file")
    parser.add_argument("--images", type=int, default=1000, help="test images to evaluate (200 with --quick)")
    args = parser.parse_args()
    if args.quick:
        args.images = min(args.images, 200)
    try:
        path = mcdonnell_file(args.mcdonnell, args.data_dir)
    except (OSError, ValueError) as e:  # a missing file, no network for the download, wrong bytes
        sys.exit(f"error: {e}")
    _, (x_test, y_test) = lesson.load_cifar10(args)

    # 1. import
    model = load_mcdonnell(path)
    convs, bns = model.convs(), model.batch_norms()
    weights = sum(conv.weight.size for _, conv in convs)
    print(f"1. import of {path.name}: {len(convs)} conv layers (stem, {len(convs) - 2} block convs, 1×1 head), "
          f"{len(bns)} BN layers, {weights:,} weights, {model.config['num_classes']} classes")

    # 2. inspect: two values per layer
    print("2. every layer holds exactly two values ±c, c = sqrt(2/(KH·KW·C_in)):")
    layers = []
    for name, conv in convs:
        w = conv.effective_weight().data
        values = np.unique(w)
        kh, kw, c_in, _ = w.shape
        c = math.sqrt(2 / (kh * kw * c_in))
        ones = float((w > 0).mean())
        layers.append(dict(name=name, shape=list(w.shape), c=c, values=len(values), ones=ones))
        print(f"     {name:24s} {str(w.shape):20s} c = {c:.5f}   values {values[0]:+.5f} {values[-1]:+.5f}   "
              f"{100 * ones:.1f} % of bits are 1")
    two_values = all(layer["values"] == 2 for layer in layers)
    g, o = model.input_bn.weight.data, model.input_bn.bias.data
    show = lambda a, d: "(" + ", ".join(f"{v:.{d}f}" for v in a) + ")"
    print(f"   input BN (learned g, o; no ReLU): gamma {show(g, 3)}, beta {show(o, 3)}, "
          f"mean {show(model.input_bn.running_mean, 1)}, std {show(np.sqrt(model.input_bn.running_var), 1)}")

    # 3. pack
    packed_path = Path(args.out) / "cifar10_wrn20_10.packed.npz"
    packed_bytes = save_packed(model, packed_path)
    arrays = pack(model)
    bits = sum(v.nbytes for k, v in arrays.items() if k.startswith("conv/"))
    stats = sum(v.nbytes for k, v in arrays.items() if k.startswith("bn/"))
    reloaded = load_packed(packed_path)
    with no_grad():
        probe = x_test[:10].astype(np.float32)
        exact = bool(np.array_equal(reloaded(probe).data, model(probe).data))
    del reloaded
    print(f"3. packed into {packed_path}: {packed_bytes / 1e6:.2f} MB ({bits / 1e6:.2f} MB of bits + "
          f"{stats / 1e6:.2f} MB of BN statistics) against {4 * weights / 1e6:.2f} MB as float32 weights "
          f"({4 * weights / packed_bytes:.0f}×); reloaded: {'identical' if exact else 'DIFFERENT'} logits on 10 images")

    # 4. a conv without multiplications: the real stem, by additions and subtractions of its input
    with no_grad():
        stem_in = model.input_bn(probe[:1]).data
        stem_out = model.stem(model.input_bn(probe[:1])).data
    addsub = conv2d_addsub(stem_in, model.stem.weight.data >= 0, model.stem.multiplier, 1, 1)
    error = float(np.abs(addsub - stem_out).max())
    print(f"4. the stem conv by additions and subtractions only (then ×c once per output): max |difference| "
          f"{error:.1e} of outputs up to {np.abs(stem_out).max():.0f}")

    # 5. what one image costs, and which part of it BN is: the same network without BN (srelu, T = 40)
    rows = op_counts(model)
    ops = totals(rows)
    bn_mul = sum(r[3]["mul"] for r in rows if r[1] == "BatchNorm2d")
    srelu_ops = totals(op_counts(wrn(20, 10, variant="srelu", bits=1, temperature=40.0, rng=0)))
    saved = ops["mul"] - srelu_ops["mul"]
    print(f"5. one image: {ops['add'] / 1e9:.2f} G additions, {ops['mul'] / 1e6:.2f} M multiplications "
          f"({bn_mul / 1e6:.2f} M in BN's ×1/σ, which absorbs the c of the conv before it; the rest ×c once per "
          f"output and the pools), {ops['cmp'] / 1e6:.1f} M comparisons (ReLU), {ops['sqrt']:,} square roots "
          f"(BN's sqrt(σ² + ε), one per channel: constants at inference, computed once, not per image)")
    print(f"   without BN (srelu, same size): {srelu_ops['mul'] / 1e6:.2f} M multiplications, since every conv output "
          f"still needs its ×c: removing BN saves {saved / 1e6:.2f} M, {100 * saved / ops['mul']:.0f} % of them")

    # 6. evaluate; an accuracy on n images is an estimate with a binomial standard error
    n = min(args.images, len(x_test))
    t = time.perf_counter()
    _, acc = evaluate(model, x_test[:n], y_test[:n], batch_size=100)
    rate = n / (time.perf_counter() - t)
    se = math.sqrt(acc * (1 - acc) / n)
    gap = (acc - AUTHORS_ACCURACY) / se
    print(f"6. accuracy {100 * acc:.2f} % ({round(acc * n)}/{n}) ± {100 * se:.2f} (binomial standard error) at "
          f"{rate:.1f} images/s")
    print(f"   the authors, 10,000 test images: {100 * AUTHORS_ACCURACY:.2f} % (± "
          f"{100 * math.sqrt(AUTHORS_ACCURACY * (1 - AUTHORS_ACCURACY) / 10_000):.2f}), {abs(gap):.2f} standard errors "
          f"of ours away: {'consistent' if abs(gap) < 2 else 'NOT consistent'}; an independent implementation: "
          f"96.30 % on the 1000 shipped test images")

    plt = lesson.pyplot()
    fig, ax = plt.subplots(figsize=(10, 3.6))
    sizes = [np.prod(layer["shape"]) for layer in layers]
    idx = np.arange(len(layers))
    ax.bar(idx - 0.2, [4 * s for s in sizes], 0.4, label="float32 (bytes)")
    ax.bar(idx + 0.2, [s / 8 for s in sizes], 0.4, label="1 bit per weight (bytes)")
    ax.set_yscale("log")
    ax.set_xticks(idx, [layer["name"].replace("stage", "s").replace(".block", ".b") for layer in layers],
                  rotation=70, fontsize=7)
    ax.set_ylabel("bytes")
    ax.legend(fontsize=8)
    ax.set_title(f"the authors' WRN-20-10: {weights:,} weights, {bits / 1e6:.2f} MB as bits, "
                 f"{100 * acc:.2f} % on {n} CIFAR-10 test images", fontsize=9)
    lesson.save_figure(fig, args, FIGURES[0])
    lesson.finish(args, dict(layers=layers, weights=weights, two_values=two_values, packed_bytes=packed_bytes,
                             float32_bytes=4 * weights, round_trip_exact=exact, addsub_stem_error=error, ops=ops,
                             accuracy=acc, accuracy_se=se, authors_gap_in_se=gap, images=n, images_per_s=rate,
                             bn_multiplications=bn_mul, srelu_ops=srelu_ops))


if __name__ == "__main__":
    main()
