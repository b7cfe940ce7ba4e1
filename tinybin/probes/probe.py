"""The probe: per-step statistics of a training WRN — gradients, weights, activations, BN statistics.

    from tinybin.probes import Probe
    probe = Probe(model)                                # attaches by module name; recording is on
    for step in range(steps):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(); loss.backward()
        probe.after_backward(model, logits, loss)       # gradients, before the update
        optimizer.step(lr)
        probe.after_step(model)                         # optional: update size and sign flips now
    probe.save("runs/probe")                            # probes.jsonl + probes.npz
    probe.detach()

`after_backward(model, logits, loss)` and `after_step(model)` are hooks of `tinybin.train.fit`
(and of `train_step`), so a probe records any training run; without `after_step` each step's
update and flips are filled in when the next step's gradients arrive (or by `close`).

The probe only registers forward hooks on modules it finds by name: the model carries no probe
code. What one step records (a dict in `probe.records`):
    step, loss, logit_std, logit_max             the logits of the batch
    grad[point] for each gradient point          std, kurtosis, p999 and max of |g|, and the power
                                                 sums n, s1..s4 that pool exactly over any steps
    layers[name]                                 per conv: ‖W‖, ‖dW‖/‖W‖, ‖update‖/‖W‖, sign flips
    flip_ratio                                   fraction of all latent weights whose sign changed
    units[name]                                  every pre-activation unit's output: mean, std and
                                                 fraction at its floor (0 ReLU, −1 sReLU, ≤ −0.99 ELU)
    stream[name]                                 std of the residual stream after stem and each block
    bn[name]                                     per BN layer asked for (default: the final BN): its
                                                 batch σ_B = sqrt(var + ε) and μ_B per channel

Gradient points are named: a module name ("head.conv": dL/d its output), a module name with
":in" ("head.conv:in": dL/d its input), "" (the model's output, the logits) or a callable
model -> ndarray (read after backward). The default points, in the summed-loss convention (the
mean-loss gradient × batch size, so a number does not shrink when the batch grows):
    logits   dL/dlogits = softmax − onehot, one value per image and class
    z        dL/dz at the head conv's output z (before the final BN or ×1/T and the pooling)
    h        dL/dh at the head conv's input h (after the head's BN→ReLU or sReLU)
    head_x   dL/dx at the head unit's input x, the residual stream after the last block
    head_w   the head conv's latent weight gradient dL/dW
Add one with `Probe(model, points={**POINTS, "stage3": "stage3.block2"})`.

Besides the summary numbers, each step keeps a bounded random subsample (`sample` values, drawn
without replacement, so a tensor of at most `sample` values is kept whole, each value once) of
each gradient point for distribution plots (CCDF, histograms): memory grows
by points × sample × 4 bytes per step, 40 kB at the default, whatever the network's size.

Off costs nothing: `Probe(model, enabled=False)` (or `probe.enabled = False`) removes every hook
and `after_backward` returns at once.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..models.units import Unit
from ..models.wrn import Block
from ..tensor import is_grad_enabled
from .points import POINTS, final_batch_norms, unit_floor
from .statistics import pooled, tail_stats


def _norm(a) -> float:
    a = np.asarray(a, np.float64)
    return float(np.sqrt(np.sum(a * a)))


class Probe:
    """Records per-step statistics of a WRN (tinybin.models.wrn) while it trains.

    model: the network; enabled: record or not; sample: gradient values kept per point and step
    (0: none); activations: also record unit outputs and the residual stream (forward hooks);
    points: {name: module name | "name:in" | "" | callable} gradient points (default POINTS);
    bn: names of BN layers whose batch σ_B and μ_B are recorded (default: the final BN's);
    seed: of the subsampling.
    """

    def __init__(self, model, enabled: bool = True, sample: int = 2048, activations: bool = True, seed: int = 0,
                 points: dict | None = None, bn=None):
        self.model = model
        self.sample = int(sample)
        self.activations = activations
        self.points = dict(POINTS if points is None else points)
        self.bn_names = list(final_batch_norms(model) if bn is None else bn)
        modules = dict(model.named_modules())
        for name, where in [*self.points.items(), *((n, n) for n in self.bn_names)]:
            if isinstance(where, str) and where.removesuffix(":in") not in modules:
                raise ValueError(f"probe point {name!r}: the model has no module {where.removesuffix(':in')!r} "
                                 f"(names look like stem, stage1.block0.conv_a, head.conv)")
            if not isinstance(where, str) and not callable(where):
                raise ValueError(f"probe point {name!r} must be a module name or a callable model -> array, "
                                 f"got {where!r}")
        self.rng = np.random.default_rng(seed)
        self.records: list[dict] = []
        self.samples = {p: [] for p in self.points}       # point -> list of float32 arrays, one per step
        self.sample_steps = {p: [] for p in self.points}  # point -> list of step numbers
        self.step = 0
        self._removers = []
        self._kept = {}                                   # point -> the Tensor whose .grad it reads
        self._forward = {}                                # this batch's unit, stream and BN statistics
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

    def _hook(self, module, fn):
        self._removers.append(module.register_forward_hook(fn))

    def _attach(self):
        modules = dict(self.model.named_modules())
        for point, where in self.points.items():
            if isinstance(where, str):
                self._hook(modules[where.removesuffix(":in")], self._keep_hook(point, where.endswith(":in")))
        for name in self.bn_names:
            self._hook(modules[name], self._bn_hook(name, modules[name].eps))
        if self.activations:
            for name, mod in modules.items():
                if isinstance(mod, Unit):
                    self._hook(mod, self._stat_hook("units", name, unit_floor(mod)))
                elif isinstance(mod, Block) or name == "stem":
                    self._hook(mod, self._stat_hook("stream", name, (None, None)))

    def detach(self):
        """Remove every hook; the model runs exactly as without a probe."""
        for remove in self._removers:
            remove()
        self._removers = []
        self._kept = {}
        self._enabled = False

    def _recording(self, module) -> bool:
        # evaluation and BN recalibration run in eval mode or under no_grad: not training steps
        return module.training and is_grad_enabled()

    def _keep_hook(self, point, at_input):
        def hook(module, inp, out):
            t = inp if at_input else out
            if self._recording(module) and t.requires_grad:
                self._kept[point] = t.retain_grad()      # its .grad is there after backward
        return hook

    def _bn_hook(self, name, eps):
        def hook(module, inp, out):
            if self._recording(module):
                rows = inp.data.reshape(-1, inp.shape[-1]).astype(np.float64)   # m, C
                self._forward.setdefault("bn", {})[name] = {
                    "sigma": np.sqrt(rows.var(axis=0) + eps).tolist(), "mean": rows.mean(axis=0).tolist()}
        return hook

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

        grads = {}
        for point, where in self.points.items():
            if callable(where):
                grads[point] = where(model)
            elif point in self._kept:
                grads[point] = self._kept[point].grad
        self._kept = {}
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
        for p in self.points:
            arrays[p] = self.values(p)
            arrays[f"{p}_step"] = np.concatenate([np.full(len(s), t, np.int32) for s, t in
                                                  zip(self.samples[p], self.sample_steps[p])]) \
                if self.samples[p] else np.zeros(0, np.int32)
        np.savez_compressed(npz, **arrays)
        return jsonl, npz
