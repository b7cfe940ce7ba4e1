"""Every op of tinybin as a function: Tensor in, Tensor out, NHWC.

Each is defined beside its forward/backward pair in `tinybin/ops/` (read the pair and its
derivation there); this module only gathers them under one name, `F`.
"""
from .ops.activations import elu, relu, srelu
from .ops.arith import exp, log, matmul, reshape, transpose
from .ops.binarize import binarize
from .ops.conv import conv2d
from .ops.loss import cross_entropy
from .ops.norm import batch_norm, batch_norm_inference
from .ops.norm_act import batch_norm_act
from .ops.pool import avg_pool2d, global_avg_pool
from .ops.scale import scale
from .ops.shape import pad_channels

__all__ = ["conv2d", "avg_pool2d", "global_avg_pool", "pad_channels", "batch_norm", "batch_norm_inference",
           "batch_norm_act", "relu", "srelu", "elu", "binarize", "scale", "cross_entropy", "matmul", "reshape",
           "transpose", "exp", "log"]
