"""Shape ops of the network: the zero-channel shortcut of the downsampling blocks."""
import numpy as np

from ..tensor import Function


def pad_channels_forward(x, extra):
    """out = concat(x, zeros with `extra` channels) on the last (channel) axis.

    The paper's downsampling shortcut doubles the channels without a 1×1 projection: old
    channels first, then all-zero ones (P1, P2).  dx = dout[..., :C].
    Shapes: x (N, H, W, C) -> out (N, H, W, C + extra).
    """
    if extra < 0:
        raise ValueError(f"pad_channels needs extra >= 0, got {extra}")
    out = np.zeros(x.shape[:-1] + (x.shape[-1] + extra,), dtype=x.dtype)
    out[..., :x.shape[-1]] = x
    return out, x.shape[-1]


def pad_channels_backward(dout, C):
    return np.ascontiguousarray(dout[..., :C])


PadChannels = Function.from_pair("PadChannels", pad_channels_forward, pad_channels_backward)



def pad_channels(x, extra: int):
    """Append `extra` all-zero channels: (N,H,W,C) -> (N,H,W,C+extra)."""
    return PadChannels.apply(x, extra=int(extra))
