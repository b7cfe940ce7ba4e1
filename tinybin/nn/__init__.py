"""Building blocks of a network: Module, Parameter and the layers of METHOD.md §1–§4."""
from .layers import (ELU, AvgPool2d, BatchNorm2d, Conv2d, GlobalAvgPool, ReLU, Scale,
                     Sequential, SReLU)
from ..io import save_npz
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "save_npz", "Conv2d", "BatchNorm2d", "ReLU", "SReLU", "ELU", "Scale",
           "AvgPool2d", "GlobalAvgPool", "Sequential"]
