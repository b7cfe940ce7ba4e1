"""Probes: per-step statistics of a training WRN — gradients, weights, activations (METHOD.md §4).

    from tinybin.probes import Probe
    probe = Probe(model)                                # attaches; recording is on
    for step in range(steps):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(); loss.backward()
        probe.after_backward(model, logits, loss)       # gradients, before the update
        optimizer.step(lr)
        probe.after_step(model)                         # optional: update size and sign flips now
    probe.save("runs/probe")                            # probes.jsonl + probes.npz
    probe.detach()

`after_backward(model, logits, loss)` has the signature of `tinybin.train.train(after_backward=)`,
so `train(cfg, after_backward=probe.after_backward)` records a whole run; without `after_step`
each step's update and flips are filled in when the next step's gradients arrive (or by `close`).

What one step records (a dict in `probe.records`):
    step, loss, logit_std, logit_max             the logits of the batch
    grad[point] for point in GRAD_POINTS         std, kurtosis, p999 and max of |g|, and the power
                                                 sums n, s1..s4 that pool exactly over any steps
    layers[name]                                 per conv: ‖W‖, ‖dW‖/‖W‖, ‖update‖/‖W‖, sign flips
    flip_ratio                                   fraction of all latent weights whose sign changed
    units[name]                                  every pre-activation unit's output: mean, std and
                                                 fraction at its floor (0 ReLU, −1 sReLU, ≤ −0.99 ELU)
    stream[name]                                 std of the residual stream after stem and each block

The gradient points, all in the summed-loss convention (the mean-loss gradient × batch size, so
a number does not shrink when the batch grows; METHOD.md §4):
    logits   dL/dlogits = softmax − onehot, one value per image and class
    z        dL/dz at the head conv's output z (before the final BN or ×1/T and the pooling)
    h        dL/dh at the head conv's input h (after the head's BN→ReLU or sReLU)
    head_x   dL/dx at the head unit's input x, the residual stream after the last block (h =
             unit(x): the gradient after the activation's mask and, in the BN nets, BN's backward)
    head_w   the head conv's latent weight gradient dL/dW

Besides the summary numbers, each step keeps a bounded random subsample (`sample` values, drawn
without replacement, so a tensor of at most `sample` values is kept whole, each value once) of
each gradient point for distribution plots (CCDF, histograms): memory grows
by 5 × sample × 4 bytes per step, 40 kB at the default, whatever the network's size.

Off costs nothing: `Probe(model, enabled=False)` (or `probe.enabled = False`) removes every hook
and the head's retained gradients, and `after_backward` returns at once.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from . import nn
from .tensor import is_grad_enabled

GRAD_POINTS = ("logits", "z", "h", "head_x", "head_w")
GRAD_LABELS = {"logits": "dL/dlogits", "z": "dL/dz (head conv output)", "h": "dL/dh (head conv input)",
               "head_x": "dL/dx (head unit input = last block output)", "head_w": "dL/dW (head conv weights)"}


# ------------------------------------------------------------------------------- statistics


def power_sums(g) -> dict:
    """n and Σg, Σg², Σg³, Σg⁴ in float64: adding them over steps pools the samples exactly."""
    g = np.asarray(g, np.float64).ravel()
    g2 = g * g
    return {"n": int(g.size), "s1": float(g.sum()), "s2": float(g2.sum()),
            "s3": float((g2 * g).sum()), "s4": float((g2 * g2).sum())}


def moments_from_sums(n, s1, s2, s3, s4):
    """(mean, std, Pearson kurtosis) from power sums; kurtosis = m4 / m2², 3 for a Gaussian.

    Central moments from raw ones: m2 = E g² − μ², m4 = E g⁴ − 4μ E g³ + 6μ² E g² − 3μ⁴.
    """
    if n == 0:
        return math.nan, math.nan, math.nan
    mu, e2, e3, e4 = s1 / n, s2 / n, s3 / n, s4 / n
    m2 = max(e2 - mu * mu, 0.0)
    m4 = e4 - 4 * mu * e3 + 6 * mu * mu * e2 - 3 * mu ** 4
    kurt = m4 / (m2 * m2) if m2 > 0 else math.nan
    return mu, math.sqrt(m2), kurt


def kurtosis(x) -> float:
    """Pearson kurtosis E[(x−μ)⁴] / σ⁴ (not the excess): 3 for a Gaussian, 1.8 for a uniform,
    larger when the tails are heavier."""
    x = np.asarray(x, np.float64).ravel()
    d = x - x.mean()
    m2 = np.mean(d * d)
    return float(np.mean(d ** 4) / (m2 * m2)) if m2 > 0 else math.nan


def tail_stats(g) -> dict:
    """std, kurtosis, 99.9th percentile and max of |g| for one step, plus the power sums."""
    a = np.abs(np.asarray(g).ravel())
    sums = power_sums(g)
    _, std, kurt = moments_from_sums(**sums)
    k = min(int(math.ceil(0.999 * a.size)) - 1, a.size - 1)
    p999 = float(np.partition(a, k)[k]) if a.size else math.nan   # the value 99.9 % lie at or below
    return {"std": std, "kurtosis": kurt, "p999": p999, "max": float(a.max()) if a.size else math.nan, **sums}


def pooled(records, point, first=0, last=None) -> dict:
    """std and kurtosis of `point`'s gradient over all values of the steps first ≤ step < last,
    pooled exactly from the per-step power sums."""
    keys = ("n", "s1", "s2", "s3", "s4")
    total = dict.fromkeys(keys, 0.0)
    for r in records:
        if r["step"] >= first and (last is None or r["step"] < last) and point in r.get("grad", {}):
            for k in keys:
                total[k] += r["grad"][point][k]
    total["n"] = int(total["n"])
    mean, std, kurt = moments_from_sums(**total)
    return {"n": total["n"], "mean": mean, "std": std, "kurtosis": kurt}


def ccdf(values):
    """(x, P(|g| > x)) at every distinct |value|, ascending; the largest value (P = 0) is left
    out so the curve fits on log axes."""
    a = np.sort(np.abs(np.asarray(values, np.float64).ravel()))
    x = np.unique(a)
    p = 1.0 - np.searchsorted(a, x, side="right") / a.size
    keep = p > 0
    return x[keep], p[keep]


# ------------------------------------------------------------------------------- the probe


def _floor_of(unit):
    """The value below which a unit's output cannot go, and the tolerance for 'at the floor'."""
    act = getattr(unit, "act", unit)
    if isinstance(act, nn.ReLU):
        return 0.0, 0.0
    if isinstance(act, nn.SReLU):
        return -1.0, 0.0
    if isinstance(act, nn.ELU):
        return -act.alpha, 0.01 * act.alpha          # ELU only approaches −α: count ≤ −0.99α
    return None, None


def _norm(a) -> float:
    a = np.asarray(a, np.float64)
    return float(np.sqrt(np.sum(a * a)))


class Probe:
    """Records per-step statistics of a WRN (tinybin.models.wrn) while it trains.

    model: the network; enabled: record or not; sample: gradient values kept per point and step
    (0: none); activations: also record unit outputs and the residual stream (forward hooks);
    seed: of the subsampling.
    """

    def __init__(self, model, enabled: bool = True, sample: int = 2048, activations: bool = True, seed: int = 0):
        self.model = model
        self.sample = int(sample)
        self.activations = activations
        self.rng = np.random.default_rng(seed)
        self.records: list[dict] = []
        self.samples = {p: [] for p in GRAD_POINTS}       # point -> list of float32 arrays, one per step
        self.sample_steps = {p: [] for p in GRAD_POINTS}  # point -> list of step numbers
        self.step = 0
        self._removers = []
        self._forward = {}                                # this batch's unit and stream statistics
        self._pending = None                              # (record, latent weights before the update)
        self._enabled = False
        self.enabled = enabled

    # ----- switching ----------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool):
        on = bool(on)
        if on and not self._enabled:
            self._attach()
        elif not on and self._enabled:
            self.detach()
        self._enabled = on

    def _attach(self):
        m = self.model
        if hasattr(m, "probe"):
            m.probe = True                       # the head keeps h and z with retain_grad()
        self._removers.append(m.register_forward_hook(self._logits_hook))
        self._head_x = None
        if hasattr(m, "head"):
            self._removers.append(m.head.unit.register_forward_hook(self._head_x_hook))
        if self.activations:
            from .models.wrn import Block, Unit
            for name, mod in m.named_modules():
                if isinstance(mod, Unit):
                    self._removers.append(mod.register_forward_hook(self._stat_hook("units", name, _floor_of(mod))))
                elif isinstance(mod, Block) or name == "stem":
                    self._removers.append(mod.register_forward_hook(self._stat_hook("stream", name, (None, None))))

    def detach(self):
        """Remove every hook; the model runs exactly as without a probe."""
        for remove in self._removers:
            remove()
        self._removers = []
        self._head_x = None
        if hasattr(self.model, "probe"):
            self.model.probe = False
            self.model.head.head_in = self.model.head.head_out = None
        self._enabled = False

    def _recording(self, module) -> bool:
        # evaluation and BN recalibration run in eval mode or under no_grad: not training steps
        return module.training and is_grad_enabled()

    def _logits_hook(self, module, inp, out):
        if self._recording(module):
            out.retain_grad()                    # so dL/dlogits is there after backward

    def _head_x_hook(self, module, inp, out):
        if self._recording(module) and inp.requires_grad:
            self._head_x = inp.retain_grad()     # the stream entering the head unit

    def _stat_hook(self, kind, name, floor):
        low, tol = floor

        def hook(module, inp, out):
            if not module.training:      # evaluation batches are not training steps
                return
            a = out.data
            s = {"mean": float(a.mean(dtype=np.float64)), "std": float(a.std(dtype=np.float64))}
            if low is not None:
                s["floor"] = float(np.count_nonzero(a <= low + tol) / a.size)
            self._forward.setdefault(kind, {})[name] = s
        return hook

    def forward_stats(self) -> dict:
        """The unit and stream statistics of the last forward pass (e.g. at init, no training)."""
        return {k: dict(v) for k, v in self._forward.items()}

    # ----- recording ----------------------------------------------------------------------
    def after_backward(self, model, logits, loss, labels=None):
        """Record this step's gradients (call after backward, before the optimizer's update)."""
        if not self._enabled:
            return
        self._complete(model)
        convs = model.convs()
        n = logits.shape[0]
        rec = {"step": self.step, "loss": float(np.asarray(loss.data if hasattr(loss, "data") else loss))}
        rec["logit_std"] = float(logits.data.std(dtype=np.float64))
        rec["logit_max"] = float(np.abs(logits.data).max())
        if labels is not None:
            rec["acc"] = float(np.mean(logits.data.argmax(axis=1) == np.asarray(labels)))

        grads = {"logits": logits.grad}
        if getattr(model, "head_out", None) is not None:
            grads["z"] = model.head_out.grad
            grads["h"] = model.head_in.grad
        if self._head_x is not None:
            grads["head_x"] = self._head_x.grad
            self._head_x = None
        grads["head_w"] = convs[-1][1].weight.grad
        rec["grad"] = {}
        for point, g in grads.items():
            if g is None:
                continue
            g = g * n                                         # summed-loss convention
            rec["grad"][point] = tail_stats(g)
            if self.sample:
                flat = g.ravel()
                idx = self.rng.choice(flat.size, min(self.sample, flat.size), replace=False)
                self.samples[point].append(flat[idx].astype(np.float32))
                self.sample_steps[point].append(self.step)

        rec["layers"] = {}
        for name, conv in convs:
            w, dw = conv.weight.data, conv.weight.grad
            w_norm = _norm(w)
            rec["layers"][name] = {"w_norm": w_norm, "bits": conv.bits,
                                   "grad_ratio": _norm(dw) / w_norm if dw is not None else math.nan}
        rec.update(self._forward)
        self._forward = {}
        self.records.append(rec)
        self._pending = (rec, {name: conv.weight.data.copy() for name, conv in convs})
        self.step += 1

    def after_step(self, model=None):
        """Record the update just applied: ‖ΔW‖/‖W‖ and sign flips per layer (optional; see above)."""
        if self._enabled:
            self._complete(model if model is not None else self.model)

    def _complete(self, model):
        if self._pending is None:
            return
        rec, before = self._pending
        self._pending = None
        flipped = total = 0
        for name, conv in model.convs():
            w0, w1 = before[name], conv.weight.data
            layer = rec["layers"][name]
            layer["update_ratio"] = _norm(w1 - w0) / layer["w_norm"]
            if conv.bits == 1:
                # sign(0) = +1, as F.binarize: the bit is w >= 0
                f = int(np.count_nonzero((w0 >= 0) != (w1 >= 0)))
                layer["flip"] = f / w0.size
                flipped, total = flipped + f, total + w0.size
        rec["flip_ratio"] = flipped / total if total else math.nan

    def close(self):
        """Fill in the last step's update and flips from the model's current weights."""
        self._complete(self.model)

    # ----- reading ------------------------------------------------------------------------
    def series(self, *keys):
        """One number per step, e.g. series("loss"), series("grad", "z", "kurtosis"),
        series("layers", "head.conv", "grad_ratio"); NaN where a step lacks it."""
        out = []
        for r in self.records:
            v = r
            for k in keys:
                v = v.get(k, math.nan) if isinstance(v, dict) else math.nan
            out.append(v)
        return np.array(out, dtype=np.float64)

    def values(self, point, first=0, last=None) -> np.ndarray:
        """The subsampled gradient values of `point` from steps first ≤ step < last."""
        parts = [s for s, t in zip(self.samples[point], self.sample_steps[point])
                 if t >= first and (last is None or t < last)]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def pooled(self, point, first=0, last=None) -> dict:
        """Exact std and kurtosis over every value of steps first ≤ step < last (not a subsample)."""
        return pooled(self.records, point, first, last)

    def median_grad_ratio(self, step=0) -> float:
        """Median over conv layers of ‖dW‖/‖W‖ at `step`."""
        rec = next(r for r in self.records if r["step"] == step)
        return float(np.median([l["grad_ratio"] for l in rec["layers"].values()]))

    # ----- saving -------------------------------------------------------------------------
    def save(self, out, name="probes"):
        """out/<name>.jsonl (one record per step) and out/<name>.npz (the gradient subsamples:
        `<point>` values and `<point>_step` their step numbers). Returns the two paths."""
        self.close()
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        jsonl, npz = out / f"{name}.jsonl", out / f"{name}.npz"
        with open(jsonl, "w") as f:
            for r in self.records:
                f.write(json.dumps(r) + "\n")
        arrays = {}
        for p in GRAD_POINTS:
            arrays[p] = self.values(p)
            arrays[f"{p}_step"] = np.concatenate([np.full(len(s), t, np.int32) for s, t in
                                                  zip(self.samples[p], self.sample_steps[p])]) \
                if self.samples[p] else np.zeros(0, np.int32)
        np.savez_compressed(npz, **arrays)
        return jsonl, npz


def load(out, name="probes"):
    """(records, {point: (values, steps)}) as written by Probe.save."""
    out = Path(out)
    records = [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines() if l.strip()]
    with np.load(out / f"{name}.npz") as f:
        samples = {p: (f[p], f[f"{p}_step"]) for p in GRAD_POINTS if p in f.files}
    return records, samples


# ------------------------------------------------------------------------------- text


def layer_table(record, title=None) -> str:
    """Plain-text table of one step's per-layer numbers (a record of Probe.records)."""
    rows = [title] if title else []
    rows.append(f"{'layer':24s} {'bits':>4s} {'|W|':>9s} {'|dW|/|W|':>10s} {'|upd|/|W|':>10s} {'flips':>9s}")
    for name, l in record["layers"].items():
        upd = l.get("update_ratio", math.nan)
        flip = l.get("flip", math.nan)
        rows.append(f"{name:24s} {l['bits']:4d} {l['w_norm']:9.3f} {l['grad_ratio']:10.3e} {upd:10.3e} {flip:9.2e}")
    return "\n".join(rows)


# ------------------------------------------------------------------------------- plots


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_ccdf(ax, values, label=None, **kw):
    """P(|g| > x) against x on log-log axes."""
    x, p = ccdf(values)
    if x.size and x[0] == 0:          # log axes cannot show 0
        x, p = x[1:], p[1:]
    if x.size > 4000:                 # draw ~2000 points, dense in the tail (large x, small p)
        keep = x.size - np.unique(np.geomspace(1, x.size, 2000).astype(int))
        x, p = x[keep], p[keep]
    ax.loglog(x, p, label=label, **kw)
    ax.set_xlabel("|g|")
    ax.set_ylabel("P(|g| > x)")
    ax.grid(alpha=0.3, which="both")


def plot_ccdf_phases(runs: dict, point: str, phases, normalise=True):
    """One panel per phase (first, last) of steps, one CCDF curve per run.

    runs: {label: Probe}. normalise: divide each phase's values by their std, so the curves
    compare *shapes* (tails), not sizes; a Gaussian's CCDF is drawn for reference.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(phases), figsize=(4.2 * len(phases), 3.6), squeeze=False)
    gauss = np.abs(np.random.default_rng(0).standard_normal(200_000))
    for ax, (first, last) in zip(axes[0], phases):
        for label, probe in runs.items():
            v = probe.values(point, first, last).astype(np.float64)
            if v.size < 2:
                continue
            if normalise:
                v = v / max(v.std(), 1e-300)
            plot_ccdf(ax, v, label=label, lw=1.2)
        if normalise:
            plot_ccdf(ax, gauss, label="Gaussian", color="k", ls=":", lw=1)
            ax.set_xlabel("|g| / std")
            ax.set_xlim(left=1e-2)           # the tail is on the right; the bulk needs no room
        ax.set_title(f"steps {first}–{last}", fontsize=9)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"CCDF of {GRAD_LABELS.get(point, point)}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_hist(ax, values, label=None, bins=101, **kw):
    """Histogram with a log count axis: the tails, invisible on a linear axis, show."""
    v = np.asarray(values, np.float64)
    ax.hist(v, bins=bins, histtype="step", log=True, label=label, **kw)
    ax.set_ylabel("count (log)")
    ax.grid(alpha=0.3)


def plot_over_time(runs: dict, point: str, stats=("std", "kurtosis", "p999", "max")):
    """std, kurtosis, 99.9th percentile and max of |g| per step, one curve per run (log y)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(stats), figsize=(4.0 * len(stats), 3.4), squeeze=False)
    titles = {"std": "std", "kurtosis": "kurtosis (Gaussian = 3)", "p999": "99.9th percentile of |g|",
              "max": "max |g|"}
    for ax, stat in zip(axes[0], stats):
        for label, probe in runs.items():
            ax.semilogy(probe.series("step"), probe.series("grad", point, stat), lw=1, label=label)
        if stat == "kurtosis":
            ax.axhline(3, color="k", ls=":", lw=1)
        ax.set_title(titles.get(stat, stat), fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(GRAD_LABELS.get(point, point), fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------- short runs


def short_run(model, x, y, steps, lr, schedule_epochs=30, batch_size=125, seed=0, probe=None, log=None):
    """`steps` SGD steps of METHOD.md §5 on images x, labels y; returns the per-step history.

    The recipe is the paper's (momentum 0.9, weight decay 5e-4, batch 125, flip + crop + cutout,
    cosine from `lr` to 1e-5) with the cosine laid out over `schedule_epochs` epochs, so a
    200-step look at the start of training sees the learning rates a real run would.
    Batches come from `seed` alone: runs with the same seed see the same images in the same order.
    probe: a Probe on `model`, fed every step. log(step, loss, acc): called every step if given.

    History: loss, acc, lr per step; same_output per step (True when every image of the batch got
    the same logits: the output no longer depends on the input); seconds per step.
    """
    import time

    from .data import Batches
    from .optim import SGD, Schedule
    from .train import train_step

    loader = Batches(x, y, batch_size=batch_size, shuffle=True, drop_last=True, augment=True, seed=seed)
    per_epoch = len(loader)
    schedule = Schedule("cosine", schedule_epochs * per_epoch, per_epoch, lr, 1e-5)
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    hist = {"loss": [], "acc": [], "lr": [], "same_output": []}
    seen = {}

    def after_backward(m, logits, loss):
        spread = np.ptp(logits.data, axis=0)                      # per class, across the batch
        seen["same"] = bool(np.all(spread <= 1e-6 * (1.0 + np.abs(logits.data).max())))
        if probe is not None:
            probe.after_backward(m, logits, loss, seen["labels"])

    model.train()
    start, step = time.perf_counter(), 0
    for epoch in range(10 ** 9):
        for xb, yb in loader.epoch(epoch):
            if step == steps:
                break
            seen["labels"] = yb
            lr_now = schedule(step)
            loss, correct = train_step(model, optimizer, xb, yb, lr_now, after_backward,
                                       probe.after_step if probe is not None else None)
            hist["loss"].append(loss)
            hist["acc"].append(correct / len(yb))
            hist["lr"].append(lr_now)
            hist["same_output"].append(seen["same"])
            if log is not None:
                log(step, loss, correct / len(yb))
            step += 1
        if step == steps:
            break
    hist["seconds_per_step"] = (time.perf_counter() - start) / max(steps, 1)
    return hist


def diagnose(hist, num_classes=10, window=30) -> dict:
    """What happened in a short run, in numbers and one verdict.

    exploded_at: first step whose loss is non-finite or above 100 × max(first loss, ln C) (the
      rule of tinybin.train's divergence detector; float32 can reach 1e17 without a NaN).
    dead_from: first step from which every later batch got the same logits for every image —
      the net's output no longer depends on its input (in a BN-free net: every unit at its floor).
    acc_last: mean training accuracy over the last `window` steps (chance = 1/C).
    verdict: "exploded, then dead", "exploded", "dead", "learning" (acc_last > 1.5 × chance)
      or "at chance".
    """
    from .train import DivergenceDetector

    loss = np.asarray(hist["loss"], np.float64)
    detector = DivergenceDetector(num_classes, factor=100.0, window=10 ** 9)
    exploded_at = next((i for i, (l, a) in enumerate(zip(loss, hist["acc"])) if detector.check(l, a)), None)
    same = np.asarray(hist["same_output"], bool)
    dead_from = None
    if same.size and same[-1]:
        live = np.flatnonzero(~same)
        dead_from = int(live[-1] + 1) if live.size else 0
    acc_last = float(np.mean(hist["acc"][-window:]))
    chance = 1.0 / num_classes
    if exploded_at is not None:
        verdict = "exploded, then dead" if dead_from is not None else "exploded"
    elif dead_from is not None:
        verdict = "dead"
    else:
        verdict = "learning" if acc_last > 1.5 * chance else "at chance"
    finite = loss[np.isfinite(loss)]
    return {"loss0": float(loss[0]), "max_loss": float(finite.max()) if finite.size else math.nan,
            "final_loss": float(loss[-1]), "acc_last": acc_last, "window": min(window, len(loss)),
            "exploded_at": exploded_at, "dead_from": dead_from, "non_finite": bool(finite.size < loss.size),
            "verdict": verdict}
