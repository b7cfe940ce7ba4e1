"""Models: WRN-depth-k with the six variants McDonnell et al. 2019 (P2) list in §IV."""
from .wrn import VARIANTS, WRN, conv_weight_count, default_temperature, wrn

__all__ = ["wrn", "WRN", "VARIANTS", "conv_weight_count", "default_temperature"]
