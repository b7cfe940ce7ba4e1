"""The kernel settings: one object, read from the environment once, changed by one context manager.

    from tinybin import kernels
    kernels.current()                               # Settings(reference=False, parallel=True, ...)
    kernels.settings(parallel=False)                # from now on
    with kernels.settings(reference=True, conv="im2col"):   # ... or only inside the block
        ...

Field                     environment variable (read on first use)   default
reference                 TINYBIN_REFERENCE=1        the NumPy reference kernels (*_ref.py) everywhere
parallel                  TINYBIN_PARALLEL=0|1       Numba kernels shared among threads (see below)
fused_bn                  TINYBIN_FUSED_BN=0         training BN (+ ReLU) as one op (ops/norm_act.py)
conv                      TINYBIN_CONV=a+b+...       rows of conv_algorithms.ALGORITHMS, tried in order
winograd_min_channels     TINYBIN_CONV_MIN_CHANNELS  the fewest in/out channels Winograd takes (64)
winograd_weight_gradient  TINYBIN_CONV_DW            "winograd" or "im2col": a Winograd layer's dw
winograd_float64          TINYBIN_CONV_FLOAT64=1     float64 layers may run by Winograd too

`conv` names the algorithms a layer may run by, in the order they are tried; the first
that fits the layer runs it, and im2col, which fits every layer, ends every list
("winograd4+direct" is the default: Winograd for the wide 3×3 layers, the direct kernels for
the narrow ones, im2col for the rest; "im2col" runs everything by im2col). kernels/conv_algorithms.py explains the measurements
behind the defaults.

parallel: by default on when Numba is given more than one thread (NUMBA_NUM_THREADS) and
OpenBLAS's threads were told to sleep when idle (tinybin/threads.py explains why that matters on
a machine with few cores); kernels/workers.py shares a kernel's work among the threads.

No other module reads a kernel TINYBIN_* variable: a bad value is reported here, naming the
variable, when the settings are first used.

Vector width (TINYBIN_WIDE_VECTORS=0|1, default 1; read when tinybin.kernels is imported).
On an AVX-512 machine LLVM's tuning prefers 256-bit vectors (early AVX-512 chips slowed their
clock for 512-bit work), so by default Numba's loops use half the register width the machine
has. `wide_vectors` asks for 512-bit vectors instead, by adding -prefer-256-bit to the CPU
features Numba compiles for, before Numba compiles anything: the direct convolution 1.15-1.5x
faster on WRN-20-1's layers, its weight gradient 1.2-1.5x, Winograd's weight products 1.2-1.5x;
a WRN-20-1 training step 1.16-1.19x (baseline2), WRN-20-4's 1.0-1.16x (alternated processes
without steal). It changes no bit of a result: no kernel lets the compiler reorder a sum (the
fused multiply-adds are formed the same at either width; tests/test_vectors.py trains a step
both ways). It applies to every Numba function the process compiles, and it steps aside when
NUMBA_CPU_NAME or NUMBA_CPU_FEATURES is set, or when Numba had compiled something before
tinybin.kernels was imported (its target is fixed by then). Numba's cache keeps the two widths'
machine code apart.
"""
from __future__ import annotations

import dataclasses
import importlib
import numbers
import os

DEFAULT_CONV = ("winograd4", "direct", "im2col")
CONV_NAMES = ("im2col", "direct", "winograd2", "winograd4")   # the rows of conv_algorithms.ALGORITHMS
WEIGHT_GRADIENTS = ("im2col", "winograd")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The kernel settings (the table above): typed values, replaced whole, never changed in place."""
    reference: bool = False
    parallel: bool = True
    fused_bn: bool = True
    conv: tuple = DEFAULT_CONV
    winograd_min_channels: int = 64
    winograd_weight_gradient: str = "winograd"
    winograd_float64: bool = False

    def checked(self, source: str) -> Settings:
        """These settings with their values in their types (`conv` a tuple ending in im2col);
        ValueError naming `source` and the bad value otherwise."""
        flags = {}
        for flag in ("reference", "parallel", "fused_bn", "winograd_float64"):
            value = getattr(self, flag)
            if value not in (True, False):
                raise ValueError(f"{source}: {flag} must be True or False, got {value!r}")
            flags[flag] = bool(value)
        channels = self.winograd_min_channels
        if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 0:
            raise ValueError(f"{source}: winograd_min_channels must be an int >= 0, got {channels!r}")
        if self.winograd_weight_gradient not in WEIGHT_GRADIENTS:
            raise ValueError(f"{source}: winograd_weight_gradient must be 'im2col' or 'winograd', "
                             f"got {self.winograd_weight_gradient!r}")
        return dataclasses.replace(self, conv=conv_order(self.conv, source), winograd_min_channels=int(channels),
                                   **flags)


def conv_order(conv, source="conv") -> tuple:
    """("winograd4", "direct", "im2col") from "winograd4+direct" or a sequence of row names."""
    names = [n.strip() for n in conv.split("+")] if isinstance(conv, str) else list(conv)
    for name in names:
        if name not in CONV_NAMES:
            raise ValueError(f"{source}: unknown convolution algorithm {name!r}; known: {', '.join(CONV_NAMES)}")
    if "im2col" in names[:-1]:
        raise ValueError(f"{source}: {'+'.join(names)!r} lists algorithms after im2col, which takes every layer")
    return tuple(names if names and names[-1] == "im2col" else names + ["im2col"])


def _flag(environ, name, default: bool) -> bool:
    value = environ.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("0", "1", "false", "true", "no", "yes"):
        raise ValueError(f"{name}={value!r}: expected 0 or 1")
    return value in ("1", "true", "yes")


def _default_parallel() -> bool:
    import numba

    from .. import threads
    return numba.config.NUMBA_NUM_THREADS > 1 and threads.blas_threads_sleep()


def from_environment(environ=os.environ) -> Settings:
    """The settings the TINYBIN_* variables of `environ` give (defaults where unset)."""
    default = Settings()
    min_channels = environ.get("TINYBIN_CONV_MIN_CHANNELS", "").strip() or str(default.winograd_min_channels)
    if not min_channels.isdigit():
        raise ValueError(f"TINYBIN_CONV_MIN_CHANNELS={min_channels!r}: expected an int >= 0")
    weight_gradient = environ.get("TINYBIN_CONV_DW", "").strip() or default.winograd_weight_gradient
    if weight_gradient not in WEIGHT_GRADIENTS:
        raise ValueError(f"TINYBIN_CONV_DW={weight_gradient!r}: expected im2col or winograd")
    parallel = environ.get("TINYBIN_PARALLEL", "").strip()
    _flag(environ, "TINYBIN_WIDE_VECTORS", True)   # only checked here: wide_vectors() read it at import
    return Settings(
        reference=_flag(environ, "TINYBIN_REFERENCE", False),
        parallel=_flag(environ, "TINYBIN_PARALLEL", False) if parallel else _default_parallel(),
        fused_bn=_flag(environ, "TINYBIN_FUSED_BN", True),
        conv=conv_order(environ.get("TINYBIN_CONV", "").strip() or DEFAULT_CONV, "TINYBIN_CONV"),
        winograd_min_channels=int(min_channels),
        winograd_weight_gradient=weight_gradient,
        winograd_float64=_flag(environ, "TINYBIN_CONV_FLOAT64", False),
    )


def wide_vectors(environ=os.environ) -> bool:
    """Let Numba's compiler use 512-bit vectors on an AVX-512 machine (see above); True if it now will."""
    # runs at import, outside a command's error handling: a bad value is reported by from_environment
    off = environ.get("TINYBIN_WIDE_VECTORS", "").strip().lower() in ("0", "false", "no")
    if off or environ.get("NUMBA_CPU_NAME") or environ.get("NUMBA_CPU_FEATURES"):
        return False
    import llvmlite.binding as llvm
    from numba.core import config as numba_config
    from numba.core.registry import cpu_target

    made = vars(cpu_target).get("_toplevel_target_context")   # Numba compiled already: its width is fixed
    if made is not None:
        return getattr(made.codegen(), "_tm_features", "").endswith(",-prefer-256-bit")
    if numba_config.CPU_FEATURES is None:
        features = llvm.get_host_cpu_features()
        if not features.get("avx512f"):
            return False
        numba_config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"
    return numba_config.CPU_FEATURES.endswith(",-prefer-256-bit")


_current: Settings | None = None   # read from the environment on first use


def current() -> Settings:
    """The settings in force."""
    global _current
    if _current is None:
        _current = from_environment()
    return _current


class settings:
    """settings(**fields) changes the named fields of the kernel settings at once; used as a
    context manager it restores the previous settings on leaving the block. ValueError for an
    unknown field or a bad value (nothing changes then)."""

    def __init__(self, **changes):
        global _current
        unknown = set(changes) - {f.name for f in dataclasses.fields(Settings)}
        if unknown:
            raise ValueError(f"unknown kernel setting(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(f.name for f in dataclasses.fields(Settings))}")
        self.previous = current()
        _current = dataclasses.replace(self.previous, **changes).checked("kernels.settings")

    def __enter__(self):
        return current()

    def __exit__(self, *exc):
        global _current
        _current = self.previous
        return False


def implementation(kind: str = "im2col"):
    """The module computing `kind` ("im2col", "direct", "winograd", "bn"): kernels/<kind>_ref.py
    under the `reference` setting, else <kind>_numba.py (imported, not compiled, on first use)."""
    return importlib.import_module(f"{__package__}.{kind}_{'ref' if current().reference else 'numba'}")
