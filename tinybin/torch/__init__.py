"""tinybin's WRN in PyTorch, both ways, and data-parallel training (an optional extra).

    pip install 'tinybin[torch]'

    from tinybin.models import wrn
    from tinybin.torch import to_torch, from_torch
    net = to_torch(wrn(20, 4, variant="baseline2", bits=1))  # computes what the tinybin model computes
    logits = net(images)                                     # (N, 32, 32, 3) or (N, 3, 32, 32)
    model = from_torch(net)                                  # back: probes, export, add/subtract path

Training on GPUs, data-parallel: `torchrun --nproc_per_node N -m tinybin.torch.train --help`.
The tinybin engine never imports this package.
"""
try:
    import torch  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    raise ImportError("tinybin.torch needs PyTorch: pip install 'tinybin[torch]'") from None

# first: an older torch is named before anything in the modules below fails on it
from .version import MINIMUM, check_version

# isort: split
from .convert import (
    from_torch,
    state_from_torch,
    state_to_torch,
    synchronise_batch_norm,
    to_torch,
    unwrap,
)
from .layers import Binarize, binarize
from .optim import SGD, make_sgd, optimizer_state_from_torch, optimizer_state_to_torch

__all__ = [
    "MINIMUM",
    "SGD",
    "Binarize",
    "binarize",
    "check_version",
    "from_torch",
    "make_sgd",
    "optimizer_state_from_torch",
    "optimizer_state_to_torch",
    "state_from_torch",
    "state_to_torch",
    "synchronise_batch_norm",
    "to_torch",
    "unwrap",
]
