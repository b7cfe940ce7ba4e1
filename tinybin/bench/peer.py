"""PyTorch beside tinybin: the same training step timed in PyTorch (`bench train --vs-torch`).

The peer network is `tinybin.torch.to_torch` of the tinybin model (same weights, same 1-bit
conv, same ops), with PyTorch's own fused batch-norm kernel switched on
(`tinybin.torch.layers.use_native_batch_norm`): the fastest faithful PyTorch version, not a
handicapped one. It runs
NCHW or channels_last (`model.to(memory_format=torch.channels_last)`, which PyTorch's CPU
convolutions prefer). Each measurement is a fresh process, so its peak memory is its own and
the two engines never share a thread pool.
"""
from __future__ import annotations

import time
from statistics import median

import numpy as np

LAYOUTS = ("nchw", "channels_last")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def measure_torch(width, variant, bits=1, depth=20, batch_size=125, steps=5, warmup=2, seed=0,
                  layout="channels_last") -> dict:
    """Time PyTorch training steps (forward, cross-entropy, backward, SGD) in this process."""
    import resource

    import torch

    from ..models import wrn
    from ..models.wrn import temperature_for
    from ..torch import make_sgd, to_torch
    from ..torch.layers import use_native_batch_norm

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    rng = np.random.default_rng(seed)
    net = use_native_batch_norm(to_torch(wrn(depth, width, variant=variant, bits=bits, rng=rng,
                                             temperature=temperature_for(variant, bits))))
    x = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch_size))
    if layout == "channels_last":
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = make_sgd(net, lr=0.01)
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(1e3 * (time.perf_counter() - t))
    step = median(times)
    return dict(width=width, variant=variant, bits=bits, depth=depth, batch_size=batch_size, layout=layout,
                step_ms=step, images_per_s=1e3 * batch_size / step, threads=torch.get_num_threads(),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
