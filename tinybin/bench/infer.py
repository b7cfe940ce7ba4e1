"""Inference benchmark: `python -m tinybin bench infer`.

Images per second of WRN-20-10 (1-bit, baseline2, TF "same" padding — the authors' network) at
batch 100: float32, eval mode, no_grad, random pixels; weights random unless `--mcdonnell FILE`
loads the released ones (same cost either way). The float path convolves with ±c as float32
matrices (im2col + GEMM): a 1-bit net gets no speed-up from its bits here — BLAS has no
add/subtract-only kernel. `--addsub` also times the add/subtract reference path
(`tinybin.embedded`) on a small net, against the float path on the same net: it shows the
arithmetic, not a fast kernel.
"""
from __future__ import annotations

import numpy as np

from .timer import median_ms


def images_per_second(model, batch_size, batches=3, warmup=1, forward=None, seed=0) -> float:
    """Median images/s of `forward(model, x)` (default: model(x) under no_grad) on random pixels."""
    from ..tensor import no_grad

    x = np.random.default_rng(seed).integers(0, 256, (batch_size, 32, 32, 3)).astype(np.float32)
    model.eval()

    def run():
        if forward is not None:
            return forward(model, x)
        with no_grad():
            return model(x)

    return 1e3 * batch_size / median_ms(run, batches, warmup)


def run(mcdonnell=None, arch="20-10", variant="baseline2", batch_size=100, batches=3, warmup=1, addsub=False) -> dict:
    """Print images/s as the module docstring says; returns {"images_per_s": ..., ...}."""
    from ..models import wrn
    from ..models.wrn import temperature_for

    if mcdonnell:
        from ..zoo import load_mcdonnell
        model, name = load_mcdonnell(mcdonnell), f"{mcdonnell} (WRN-20-10 baseline2 1-bit)"
    else:
        try:
            depth, width = (int(v) for v in arch.split("-"))
        except ValueError:
            raise ValueError(f"--arch takes DEPTH-WIDTH, e.g. 20-10, not {arch!r}") from None
        model = wrn(depth, width, variant=variant, bits=1, padding="tf-same", rng=0,
                    temperature=temperature_for(variant, 1))
        name = f"WRN-{depth}-{width} {variant} 1-bit, random weights"
    figures = {"images_per_s": images_per_second(model, batch_size, batches, warmup)}
    print(f"{name}: {figures['images_per_s']:.1f} images/s at batch {batch_size} (float32, eval, no_grad; "
          f"median of {batches} batches)")
    if addsub:
        from ..embedded import addsub_forward

        small = wrn(8, 1, variant="baseline2", bits=1, padding="tf-same", rng=0)
        fast = figures["small_images_per_s"] = images_per_second(small, 10, batches, warmup)
        slow = figures["addsub_images_per_s"] = images_per_second(small, 10, batches, warmup, forward=addsub_forward)
        print(f"WRN-8-1 baseline2 1-bit, batch 10: float path {fast:.0f} images/s, add/subtract reference path "
              f"{slow:.1f} images/s ({fast / slow:.0f}× slower: NumPy sums per output channel, no fast kernel)")
    return figures
