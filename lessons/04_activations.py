"""Lesson 04 — ReLU, sReLU and ELU: values, derivatives at the kinks, and output statistics.

Question
    The BN-free variants replace BN → ReLU by a lone sReLU(x) = max(−1, x) (or ELU). What do the
    three functions and their derivatives look like, what value does each derivative take exactly
    at its kink, and what mean and spread do their outputs have when the input is Gaussian?

Run
    python lessons/04_activations.py

Expected output (a full run)
         x     relu  d relu      srelu  d srelu       elu  d elu
      -2.0    0.000    0.000    -1.000    0.000    -0.865    0.135
      -1.0    0.000    0.000    -1.000    0.000    -0.632    0.368
      -0.5    0.000    0.000    -0.500    1.000    -0.393    0.607
       0.0    0.000    0.000     0.000    1.000     0.000    1.000
       0.5    0.500    1.000     0.500    1.000     0.500    1.000
       2.0    2.000    1.000     2.000    1.000     2.000    1.000
    kinks: d relu/dx at 0 = 0, d srelu/dx at -1 = 0, d elu/dx at 0 = 1
    outputs for x ~ N(0, s^2), 1,000,000 samples (closed form in brackets)
         s              relu mean / std             srelu mean / std               elu mean / std   srelu at floor
       0.5    0.200 ( 0.199) / 0.292 (0.292)    0.005 ( 0.004) / 0.490 (0.490)    0.050 ( 0.049) / 0.430 (0.430)   0.023
       1.0    0.399 ( 0.399) / 0.584 (0.584)    0.084 ( 0.083) / 0.866 (0.867)    0.161 ( 0.161) / 0.787 (0.787)   0.158
       2.0    0.796 ( 0.798) / 1.166 (1.168)    0.393 ( 0.396) / 1.487 (1.488)    0.464 ( 0.466) / 1.427 (1.429)   0.309
       4.0    1.593 ( 1.596) / 2.335 (2.335)    1.142 ( 1.145) / 2.669 (2.669)    1.187 ( 1.190) / 2.635 (2.635)   0.402

Takeaway
    For unit-Gaussian inputs ReLU's output has mean 0.40: an offset that, without BN, the next
    layer inherits. sReLU moves the floor to −1 and brings the mean down to 0.08 (ELU: 0.16),
    while passing more of the spread (std 0.87 vs ReLU's 0.58). The kink values are conventions
    (tinybin: ReLU'(0) = 0, sReLU'(−1) = 0, ELU'(0) = 1), stated in the ops and pinned by tests.
    But for wider inputs every mean grows ∝ s (sReLU 1.14 at s = 4): an activation alone does
    not control the signal's scale — lesson 06 follows it through a network.

Try next
    --samples 10000000    tighter estimates
    --sigmas 0.5 1 2 4 8  other input scales
"""
import math

import numpy as np

import tinybin as tb
import tinybin.functional as F

import lesson

NEEDS_DATA = False
FIGURES = ["activations.png"]
RESULT_KEYS = ["table", "kinks", "gaussian"]

ACTS = {"relu": F.relu, "srelu": F.srelu, "elu": F.elu}


def value_and_derivative(fn, x):
    """fn(x) and d fn/dx, element-wise, through tinybin's forward/backward (float64)."""
    t = tb.Tensor(np.asarray(x, np.float64), requires_grad=True)
    out = fn(t)
    out.backward(np.ones_like(out.data))       # element-wise op: the gradient of Σ out is f'(x)
    return out.data, t.grad


def phi(z):
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def Phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def closed_form(name, s):
    """Mean and std of act(X), X ~ N(0, s²).

    max(a, X): E = a·Φ(a/s) + s·φ(a/s);  E[max(a,X)²] = a²Φ(a/s) + s²(1 − Φ(a/s)) + a·s·φ(a/s)
    ELU: the positive half as ReLU, plus E[(e^X − 1); X < 0] with E[e^{kX}; X < 0] = e^{k²s²/2}Φ(−ks).
    """
    if name in ("relu", "srelu"):
        a = 0.0 if name == "relu" else -1.0
        z = a / s
        m1 = a * Phi(z) + s * phi(z)
        m2 = a * a * Phi(z) + s * s * (1 - Phi(z)) + a * s * phi(z)
    else:
        pos1, pos2 = s * phi(0), s * s / 2                   # E[X; X>0], E[X²; X>0]
        e1 = math.exp(s * s / 2) * Phi(-s)                   # E[e^X; X<0]
        e2 = math.exp(2 * s * s) * Phi(-2 * s)               # E[e^{2X}; X<0]
        m1 = pos1 + e1 - 0.5
        m2 = pos2 + e2 - 2 * e1 + 0.5
    return m1, math.sqrt(m2 - m1 * m1)


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--samples", type=int, default=1_000_000, help="Gaussian pre-activations per scale")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0],
                        help="standard deviations s of the pre-activations")
    args = parser.parse_args()
    if args.quick:
        args.samples = min(args.samples, 200_000)
    rng = np.random.default_rng(args.seed)
    results = {}

    # ----- 1. values and derivatives, including the kinks -------------------------------------
    xs = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 2.0])
    table = {name: value_and_derivative(fn, xs) for name, fn in ACTS.items()}
    print("     x" + "".join(f"  {n:>7s}  d {n:<6s}" for n in ACTS))
    for i, v in enumerate(xs):
        print(f"  {v:4.1f}" + "".join(f"  {table[n][0][i]:7.3f}  {table[n][1][i]:7.3f} " for n in ACTS))
    kinks = {"relu_at_0": float(value_and_derivative(F.relu, [0.0])[1][0]),
             "srelu_at_-1": float(value_and_derivative(F.srelu, [-1.0])[1][0]),
             "elu_at_0": float(value_and_derivative(F.elu, [0.0])[1][0])}
    print(f"kinks: d relu/dx at 0 = {kinks['relu_at_0']:g}, d srelu/dx at -1 = {kinks['srelu_at_-1']:g}, "
          f"d elu/dx at 0 = {kinks['elu_at_0']:g}")
    results["table"] = {"x": xs, **{n: {"value": v, "derivative": d} for n, (v, d) in table.items()}}
    results["kinks"] = kinks

    # ----- 2. output statistics for Gaussian pre-activations -----------------------------------
    print(f"outputs for x ~ N(0, s^2), {args.samples:,} samples (closed form in brackets)")
    print("     s" + "".join(f"   {n + ' mean / std':>26s}" for n in ACTS) + "   srelu at floor")
    gauss = {}
    for s in args.sigmas:
        x = rng.standard_normal(args.samples) * s
        row = {}
        for name, fn in ACTS.items():
            with tb.no_grad():
                out = fn(tb.Tensor(x)).data
            cm, cs = closed_form(name, s)
            row[name] = {"mean": float(out.mean()), "std": float(out.std()), "mean_exact": cm, "std_exact": cs}
        floor = float(np.mean(x <= -1))                     # fraction of sReLU outputs stuck at −1
        row["srelu_floor_fraction"] = floor
        gauss[str(s)] = row
        print(f"  {s:4.1f}" + "".join(
            f"   {r['mean']:6.3f} ({r['mean_exact']:6.3f}) / {r['std']:5.3f} ({r['std_exact']:5.3f})"
            for r in (row[n] for n in ACTS)) + f"   {floor:.3f}")
    results["gaussian"] = gauss

    # ----- figure ------------------------------------------------------------------------------
    plt = lesson.pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    grid = np.linspace(-3, 3, 601)
    for name, fn in ACTS.items():
        v, d = value_and_derivative(fn, grid)
        axes[0].plot(grid, v, label=name)
        axes[1].plot(grid, d, label=name)
    axes[0].set_title("f(x)")
    axes[1].set_title("f'(x);  at the kinks relu'(0)=0, srelu'(−1)=0, elu'(0)=1", fontsize=9)
    fine = np.linspace(0.25, max(args.sigmas), 40)
    for name in ACTS:
        axes[2].plot(fine, [closed_form(name, s)[0] for s in fine], label=f"{name} (closed form)")
        axes[2].plot(args.sigmas, [gauss[str(s)][name]["mean"] for s in args.sigmas], "ko", ms=3)
    axes[2].axhline(0, color="gray", lw=0.8)
    axes[2].set_title("mean of f(x), x ~ N(0, s²); dots sampled", fontsize=9)
    axes[2].set_xlabel("s")
    for a in axes:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    lesson.save_figure(fig, args, FIGURES[0])
    lesson.finish(args, results)


if __name__ == "__main__":
    main()
