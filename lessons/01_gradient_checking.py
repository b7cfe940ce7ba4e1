"""Lesson 01 — gradient checking: why float64, and why a random upstream gradient.

Question
    A hand-written backward is checked against central differences (f(x+h) − f(x−h)) / 2h. Why
    must the check run in float64, and why must the loss be Σ out·G with a *random* G rather
    than out.sum()?

Run
    python lessons/01_gradient_checking.py

Expected output (a full run)
    finite differences of L = sum(BN(x) * G), x (4, 3, 3, 2), error = max|numeric - analytic| / max|analytic|
           h   float32    float64
       1e-01  1.59e-04   1.58e-04
       1e-02  6.01e-05   1.58e-06
       1e-03  5.79e-04   1.58e-08
       1e-04  6.59e-03   1.57e-10
       1e-05  5.49e-02   7.79e-11
       1e-06  3.40e-01   7.86e-10
       1e-07  3.34e+00   1.09e-08
       1e-08  1.62e+01   1.54e-07
       1e-09  1.00e+00   1.13e-06
    best float32 error 6.01e-05 at h=1e-02; best float64 error 7.79e-11 at h=1e-05
    at gradcheck's h=1e-5: float32 5.5e-02 (a correct backward would look wrong), float64 7.8e-11
    tinybin.gradcheck(F.batch_norm) in float64, random upstream: max abs err 9.9e-10 over x, weight, bias ... ok
    a wrong BN backward (drops the variance path):
      upstream .sum():  max |dx| right 2.5e-16, wrong 0.0e+00  -> gradcheck ok   (the bug passes)
      random upstream:  gradcheck FAILED, max abs err 2.6e+00   (the bug is caught)

Takeaway
    Two errors compete: truncation (∝ h², the same in both dtypes: 1.6e-4 at h = 0.1) and
    rounding (≈ ε·|L| / h). float32's ε ≈ 1e-7 makes rounding win already at h = 1e-3, so its
    best error is ~1e-4 and at the usual h = 1e-5 a *correct* backward is 5 % off; float64
    (ε ≈ 1e-16) reaches 1e-10. And each channel of BN's output sums to zero whatever x is, so with
    a .sum() loss the true input gradient is exactly 0: a backward that drops the variance path
    also returns 0 and passes. A random upstream gradient G exposes it at once.

Try next
    --shape 8 4 4 3   a bigger input
    --element 0 0 0 0 which element the h-sweep perturbs (the table is over all elements)
"""
import numpy as np

import tinybin as tb
import tinybin.functional as F
from tinybin.ops import norm
from tinybin.tensor import Function

import lesson

NEEDS_DATA = False
FIGURES = ["fd_error_vs_h.png"]
RESULT_KEYS = ["h", "error_float32", "error_float64", "gradcheck_bn", "wrong_bn"]


def loss(x, G):
    """L = Σ BN(x) · G, computed in x's dtype (no learned scale or shift)."""
    out, _ = norm.batch_norm_forward(x)
    return np.sum(out * G, dtype=x.dtype)


def finite_differences(x, G, h):
    """Central differences of loss() for every element of x, in x's dtype."""
    num = np.empty(x.shape, np.float64)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h                              # in float32, x ± h is itself rounded
        xm[idx] -= h
        num[idx] = (float(loss(xp, G)) - float(loss(xm, G))) / (2 * h)
    return num


def wrong_bn_backward(dout, cache):
    """A classic mistake: treat the variance as a constant, i.e. drop the x̂·mean(dx̂·x̂) term."""
    xhat, inv_std = cache.xhat, cache.inv_std     # norm.BatchNormCache, a named tuple
    d = dout.reshape(xhat.shape)                  # m, C
    dx = (d - d.mean(axis=0)) * inv_std           # m, C  (only the path through the mean)
    return dx.reshape(dout.shape)


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--shape", type=int, nargs=4, default=[4, 3, 3, 2], metavar=("N", "H", "W", "C"),
                        help="input shape, NHWC")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x64 = rng.standard_normal(args.shape)
    G64 = rng.standard_normal(args.shape)          # the random upstream gradient
    _, cache = norm.batch_norm_forward(x64)
    analytic, _, _ = norm.batch_norm_backward(G64, cache)   # float64, the reference
    scale = np.abs(analytic).max()

    # ----- 1. the same finite differences in float32 and float64 -----------------------------
    hs = [10.0 ** -k for k in range(1, 10)]
    errors = {}
    for dtype in (np.float32, np.float64):
        x, G = x64.astype(dtype), G64.astype(dtype)
        errors[dtype.__name__] = [float(np.abs(finite_differences(x, G, h) - analytic).max() / scale) for h in hs]
    print(f"finite differences of L = sum(BN(x) * G), x {tuple(args.shape)}, "
          "error = max|numeric - analytic| / max|analytic|")
    print("       h   float32    float64")
    for h, e32, e64 in zip(hs, errors["float32"], errors["float64"]):
        print(f"   {h:.0e}  {e32:8.2e}   {e64:8.2e}")
    best = {k: (min(v), hs[int(np.argmin(v))]) for k, v in errors.items()}
    print(f"best float32 error {best['float32'][0]:.2e} at h={best['float32'][1]:.0e}; "
          f"best float64 error {best['float64'][0]:.2e} at h={best['float64'][1]:.0e}")
    i5 = hs.index(1e-5)
    print(f"at gradcheck's h=1e-5: float32 {errors['float32'][i5]:.1e} (a correct backward would look wrong), "
          f"float64 {errors['float64'][i5]:.1e}")

    plt = lesson.pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for k, style in (("float32", "o-"), ("float64", "s-")):
        ax.loglog(hs, errors[k], style, label=k)
    ax.set_xlabel("step h")
    ax.set_ylabel("max |numeric − analytic| / max |analytic|")
    ax.set_title("central differences of Σ BN(x)·G")
    ax.invert_xaxis()
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)
    lesson.save_figure(fig, args, FIGURES[0])

    # ----- 2. tinybin.gradcheck on the real backward ------------------------------------------
    x = tb.Tensor(x64, requires_grad=True)
    w = tb.Tensor(1 + 0.1 * rng.standard_normal(args.shape[-1]), requires_grad=True)
    b = tb.Tensor(0.1 * rng.standard_normal(args.shape[-1]), requires_grad=True)
    report = tb.gradcheck(lambda x, w, b: F.batch_norm(x, w, b), x, w, b, seed=args.seed)
    max_abs = max(r.max_abs_error for r in report)
    max_rel = max(r.max_rel_error for r in report)
    print(f"tinybin.gradcheck(F.batch_norm) in float64, random upstream: max abs err {max_abs:.1e} "
          f"over x, weight, bias ... {'ok' if report.ok else 'FAILED'}")
    print("  (an element-wise relative error can look large where the gradient itself is ~0)")
    print("  " + str(report).replace("\n", "\n  "))

    # ----- 3. a wrong backward: .sum() hides it, a random upstream gradient catches it ---------
    WrongBN = Function.from_pair("WrongBN", lambda x: norm.batch_norm_forward(x), wrong_bn_backward)
    ones = np.ones(args.shape)
    right_dx, _, _ = norm.batch_norm_backward(ones, cache)
    wrong_dx = wrong_bn_backward(ones, cache)
    fn = lambda t: WrongBN.apply(t)  # noqa: E731
    with_sum = tb.gradcheck(fn, tb.Tensor(x64, requires_grad=True), dout=ones, raise_exception=False)
    with_random = tb.gradcheck(fn, tb.Tensor(x64, requires_grad=True), seed=args.seed, raise_exception=False)
    print("a wrong BN backward (drops the variance path):")
    print(f"  upstream .sum():  max |dx| right {np.abs(right_dx).max():.1e}, wrong {np.abs(wrong_dx).max():.1e}"
          f"  -> gradcheck {'ok' if with_sum.ok else 'FAILED'}   (the bug passes)")
    print(f"  random upstream:  gradcheck {'ok' if with_random.ok else 'FAILED'}, "
          f"max abs err {with_random[0].max_abs_error:.1e}   (the bug is caught)")

    lesson.finish(args, {
        "h": hs, "error_float32": errors["float32"], "error_float64": errors["float64"],
        "best": {k: {"error": v[0], "h": v[1]} for k, v in best.items()},
        "gradcheck_bn": {"ok": report.ok, "max_abs_error": max_abs, "max_rel_error": max_rel},
        "wrong_bn": {"sum_upstream_ok": with_sum.ok, "random_upstream_ok": with_random.ok,
                     "random_max_abs_error": with_random[0].max_abs_error,
                     "sum_right_dx_max": float(np.abs(right_dx).max()),
                     "sum_wrong_dx_max": float(np.abs(wrong_dx).max())},
    })


if __name__ == "__main__":
    main()
