"""Every op of tinybin as a function: Tensor in, Tensor out, NHWC.

Each is a thin `Function.apply` over a forward/backward pair in `tinybin/ops/`; read the pair
(and its docstring derivation) there.
"""
import numpy as np

from .ops import arith
from .ops.activations import ELU, ReLU, SReLU
from .ops.binarize import Binarize
from .ops.conv import conv2d
from .ops.loss import CrossEntropy
from .ops.norm import BatchNorm
from .ops.pool import avg_pool2d, global_avg_pool
from .ops.scale import Scale
from .ops.shape import PadChannels
from .tensor import Tensor

__all__ = ["conv2d", "avg_pool2d", "global_avg_pool", "pad_channels", "batch_norm", "relu", "srelu",
           "elu", "binarize", "scale", "cross_entropy", "matmul", "reshape", "transpose", "exp", "log"]

matmul, reshape, transpose, exp, log = arith.matmul, arith.reshape, arith.transpose, arith.exp, arith.log


def pad_channels(x, extra: int) -> Tensor:
    """Append `extra` all-zero channels: (N,H,W,C) -> (N,H,W,C+extra)."""
    return PadChannels.apply(x, extra=int(extra))


def batch_norm(x, weight=None, bias=None, eps=1e-5, mean_only=False, return_stats=False):
    """Batch norm with this batch's per-channel statistics; optional learned weight and bias.

    return_stats=True also returns the batch mean and biased variance (ndarrays; var is None
    for mean_only), which BatchNorm2d uses for moving averages and recalibration.
    """
    stats = {}
    out = BatchNorm.apply(x, weight, bias, eps=eps, mean_only=mean_only, stats=stats)
    return (out, stats["mean"], stats["var"]) if return_stats else out


def relu(x) -> Tensor:
    """max(0, x)"""
    return ReLU.apply(x)


def srelu(x) -> Tensor:
    """max(-1, x)"""
    return SReLU.apply(x)


def elu(x, alpha=1.0) -> Tensor:
    """x if x > 0 else alpha·(exp(x) − 1)"""
    return ELU.apply(x, alpha=alpha)


def binarize(w, multiplier) -> Tensor:
    """multiplier·sign(w) (sign(0) = +1); backward: identity to the latent w, unscaled."""
    return Binarize.apply(w, multiplier=multiplier)


def scale(x, c) -> Tensor:
    """c·x for a constant c: the 1/T layer before global average pooling."""
    return Scale.apply(x, c=c)


def cross_entropy(logits, labels) -> Tensor:
    """Mean softmax cross-entropy over the batch; labels are integer class indices (N,)."""
    labels = labels.data if isinstance(labels, Tensor) else np.asarray(labels)
    return CrossEntropy.apply(logits, labels)
