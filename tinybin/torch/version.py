"""The oldest PyTorch tinybin.torch runs on, checked when tinybin.torch is imported."""
from __future__ import annotations

import re
import sys

import torch

MINIMUM = (2, 1)  # as pyproject.toml's extra says (torch>=2.1)


def check_version(version: str):
    """ImportError, in one line, when torch `version` ("2.0.1+cpu") is older than MINIMUM."""
    found = tuple(int(n) for n in re.findall(r"\d+", version)[:2])
    if found < MINIMUM:
        need = ".".join(map(str, MINIMUM))
        raise ImportError(f"tinybin.torch needs PyTorch {need} or newer, and found torch {version}: "
                          f"pip install -U 'torch>={need}'")


try:
    check_version(str(torch.__version__))
except ImportError as e:
    if sys.argv[:1] == ["-m"]:  # `python -m tinybin.torch.train` while its package loads: a command, one line
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    raise
