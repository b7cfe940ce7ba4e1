"""Building blocks of a network: Module, Parameter and the layers of P1 and P2."""
from ..io import save_npz
from .layers import ELU, AvgPool2d, BatchNorm2d, Conv2d, GlobalAvgPool, Identity, ReLU, Scale, Sequential, SReLU
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "save_npz", "Conv2d", "BatchNorm2d", "ReLU", "SReLU", "ELU", "Scale",
           "AvgPool2d", "GlobalAvgPool", "Identity", "Sequential"]
