"""Reading probe records back: the files `Probe.save` writes, and one step's per-layer table."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def load(out, name="probes"):
    """(records, {point: (values, steps)}) as written by Probe.save."""
    out = Path(out)
    records = [json.loads(l) for l in (out / f"{name}.jsonl").read_text().splitlines() if l.strip()]
    with np.load(out / f"{name}.npz", allow_pickle=False) as f:
        samples = {k[:-5]: (f[k[:-5]], f[k]) for k in f.files if k.endswith("_step")}
    return records, samples


def layer_table(record, title=None) -> str:
    """Plain-text table of one step's per-layer numbers (a record of Probe.records)."""
    rows = [title] if title else []
    rows.append(f"{'layer':24s} {'bits':>4s} {'|W|':>9s} {'|dW|/|W|':>10s} {'|upd|/|W|':>10s} {'flips':>9s}")
    for name, l in record["layers"].items():
        upd = l.get("update_ratio", math.nan)
        flip = l.get("flip", math.nan)
        rows.append(f"{name:24s} {l['bits']:4d} {l['w_norm']:9.3f} {l['grad_ratio']:10.3e} {upd:10.3e} {flip:9.2e}")
    return "\n".join(rows)
