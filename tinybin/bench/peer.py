"""PyTorch beside tinybin: the same training step timed in PyTorch (`bench train --vs-torch`).

Two PyTorch networks, each NCHW or channels_last (`model.to(memory_format=torch.channels_last)`,
which PyTorch's CPU convolutions prefer):
  bridge   `tinybin.torch.to_torch` of the tinybin model (same weights, same 1-bit conv, same ops),
           with PyTorch's fused batch-norm kernel switched on (`use_native_batch_norm`): what a
           tinybin user trains on a GPU;
  plain    `bench.peer_plain.PlainWRN`, the same network written as a PyTorch user would, without
           tinybin: the fastest idiomatic PyTorch, so that the comparison does not flatter tinybin.
Each measurement is a fresh process, so its peak memory is its own and the two engines never
share a thread pool.

Which kinds run by default (PEERS): WRN-20-1, batch 125, 3 alternated rounds, one run at load
2.4–3.0 on 2 cores (noisy: compare within the run), images/s baseline2 / srelu:
bridge-nchw 272 / 239, bridge-cl 204 / 308, plain-cl 223 / 250, plain-nchw 180 / 200. plain-nchw
was never the fastest and is left out (`--peers` brings it back); the bridge as it was before its
sReLU, batch-norm statistics and shortcut were made lean ran 156 / 185 in that run. A second run
(load 1.2–2.8): old bridge-cl 149 / 149, bridge-cl 222 / 198, bridge-nchw 219 / 174, plain-cl 222 / 169.

torch.compile (inductor, CPU, torch 2.13) of the plain network, WRN-20-1 srelu, one training step
compiled whole: the first step took 70 s (5.7 s with the compile cache warm), and afterwards a step
was slower than eager (427 against 280 ms, same load): not used.
"""
from __future__ import annotations

import time
from statistics import median

import numpy as np

# peer kind -> (network, memory layout); the --vs-torch table's default kinds are PEERS
KINDS = {"bridge-nchw": ("bridge", "nchw"), "bridge-cl": ("bridge", "channels_last"),
         "plain-nchw": ("plain", "nchw"), "plain-cl": ("plain", "channels_last")}
PEERS = ("bridge-nchw", "bridge-cl", "plain-cl")


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build(kind, width, variant, bits=1, depth=20, seed=0):
    """The PyTorch network of peer `kind` (a key of KINDS), in training mode and its layout."""
    import torch

    from ..models import wrn
    from ..models.wrn import temperature_for

    if kind not in KINDS:
        raise ValueError(f"peer kind must be one of {', '.join(KINDS)}, got {kind!r}")
    network, layout = KINDS[kind]
    temperature = temperature_for(variant, bits)
    if network == "bridge":
        from ..torch import to_torch
        from ..torch.layers import use_native_batch_norm

        net = use_native_batch_norm(to_torch(wrn(depth, width, variant=variant, bits=bits, rng=seed,
                                                 temperature=temperature)))
    else:
        from .peer_plain import PlainWRN

        torch.manual_seed(seed)
        net = PlainWRN(depth, width, variant, bits, temperature or 1.0)
    return net.to(memory_format=torch.channels_last) if layout == "channels_last" else net


def measure_torch(width, variant, bits=1, depth=20, batch_size=125, steps=5, warmup=2, seed=0,
                  kind="bridge-cl") -> dict:
    """Time PyTorch training steps (forward, cross-entropy, backward, SGD) in this process."""
    import resource

    import torch

    net = build(kind, width, variant, bits, depth, seed)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.integers(0, 256, (batch_size, 3, 32, 32)).astype(np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch_size))
    if KINDS[kind][1] == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    if KINDS[kind][0] == "bridge":   # the bridge's own SGD (tinybin's velocity), as its users train
        from ..torch import make_sgd

        opt = make_sgd(net, lr=0.01)
    else:                             # torch's (foreach) SGD with tinybin's momentum and weight decay
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
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
    return dict(width=width, variant=variant, bits=bits, depth=depth, batch_size=batch_size, kind=kind,
                step_ms=step, images_per_s=1e3 * batch_size / step, threads=torch.get_num_threads(),
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
