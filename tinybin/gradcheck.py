"""Finite-difference gradient checking (cs231n's recipe, STYLE.md §4).

For a function f of some tensors and a *random* upstream gradient G, the analytic gradient of
L = Σ f(x) · G (one backward pass) is compared with central differences
(L(x + h) − L(x − h)) / 2h, in float64, element by element.

Why float64: with h = 1e-5 the truncation error is ~h² and the rounding error ~ε·|L|/h; in float32
(ε ≈ 1e-7) the rounding term alone is ~1e-2 of the gradient, so a float32 check cannot tell
right from wrong.
Why a random G: with G = 1 (i.e. `.sum()`) some wrong backwards pass — batch norm's input
gradient is identically zero under a sum, whatever its backward computes.
Expect relative errors around 1e-8 or less; 1e-5 or more means a bug.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tensor import Tensor


@dataclass
class InputReport:
    index: int              # position of the input among fn's arguments
    shape: tuple
    checked: int            # elements checked (all of a small input, a sample of a large one)
    max_abs_error: float
    max_rel_error: float    # max |a − n| / max(1e-8, |a| + |n|) over checked elements
    worst_index: tuple      # where max_abs_error occurred
    ok: bool

    def __str__(self):
        status = "ok" if self.ok else "FAILED"
        return (f"input {self.index} {self.shape}: {status}  max abs err {self.max_abs_error:.3e}  "
                f"max rel err {self.max_rel_error:.3e}  worst at {self.worst_index}  ({self.checked} elements)")


class GradcheckError(AssertionError):
    def __init__(self, reports):
        self.reports = reports
        super().__init__("gradient check failed:\n" + "\n".join(f"  {r}" for r in reports))


class GradcheckReport(list):
    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    def __str__(self):
        return "\n".join(str(r) for r in self)


def gradcheck(fn, *tensors, dout=None, eps=1e-5, atol=1e-7, rtol=1e-5, max_elements=200,
              seed=0, raise_exception=True) -> GradcheckReport:
    """Check fn's gradients for every input that requires one.

    fn(*tensors) -> Tensor. Inputs are converted to float64 copies first. Inputs with at most
    `max_elements` elements are checked everywhere, larger ones at `max_elements` sampled
    positions. An element passes when |analytic − numeric| <= atol + rtol · max|numeric|.
    Returns a GradcheckReport (a list of InputReport); raises GradcheckError on failure unless
    raise_exception=False.
    """
    rng = np.random.default_rng(seed)
    inputs = [Tensor(t.data.astype(np.float64), requires_grad=t.requires_grad)
              if isinstance(t, Tensor) and t.dtype.kind == "f" else t for t in tensors]
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires a gradient")

    out = fn(*inputs)
    if out.dtype != np.float64:
        raise ValueError(f"gradcheck: fn returned {out.dtype}; it must compute in float64 when its inputs are float64")
    G = rng.standard_normal(out.shape) if dout is None else np.asarray(dout, dtype=np.float64)
    out.backward(G)

    def loss() -> float:
        return float(np.sum(fn(*inputs).data * G))

    reports = GradcheckReport()
    for i in checked:
        x = inputs[i].data
        analytic = inputs[i].grad if inputs[i].grad is not None else np.zeros_like(x)
        flat = np.arange(x.size) if x.size <= max_elements else rng.choice(x.size, max_elements, replace=False)
        numeric = np.empty(len(flat))
        for k, j in enumerate(flat):
            idx = np.unravel_index(j, x.shape)
            old = x[idx]
            x[idx] = old + eps
            plus = loss()
            x[idx] = old - eps
            minus = loss()
            x[idx] = old
            numeric[k] = (plus - minus) / (2 * eps)
        a = analytic.ravel()[flat]
        abs_err = np.abs(a - numeric)
        rel_err = abs_err / np.maximum(1e-8, np.abs(a) + np.abs(numeric))
        worst = int(np.argmax(abs_err))
        ok = bool(np.all(abs_err <= atol + rtol * np.max(np.abs(numeric), initial=0.0)))
        reports.append(InputReport(i, x.shape, len(flat), float(abs_err.max()), float(rel_err.max()),
                                   tuple(int(v) for v in np.unravel_index(flat[worst], x.shape)), ok))
    if raise_exception and not reports.ok:
        raise GradcheckError(reports)
    return reports
