"""Module and Parameter: the containers a network is built from.

A `Module` registers, in the order they are assigned in `__init__`, its `Parameter`s, its
sub-modules and its buffers (arrays that are state but not trained, e.g. BN running statistics).
Assign them in forward order: `parameters()` then lists weights in the order the data meets
them, which is what optimizers, probes ("layer 7") and exporters rely on.

Nothing here caches an array of a particular dtype: replacing `p.data` with a float64 copy
makes the whole model compute in float64 (gradient checks), and buffers are cast at use.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..io import save_npz
from ..tensor import Tensor


class Parameter(Tensor):
    """A trained array: a Tensor with requires_grad=True.

    decay: whether weight decay applies (P1, P2: conv latent weights yes, BN scale/shift no).
    """

    def __init__(self, data, decay: bool = True):
        super().__init__(np.asarray(data), requires_grad=True)
        self.decay = bool(decay)

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype}, decay={self.decay})"


class Module:
    """Base class: subclasses set attributes in __init__ and define forward(x)."""

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_hooks", [])
        object.__setattr__(self, "training", True)

    # ----- registration -------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        self._params.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array: np.ndarray):
        """State that is saved and loaded but not trained (e.g. running statistics)."""
        self._buffers[name] = None  # the value lives in the attribute; this keeps the order
        setattr(self, name, array)

    def register_forward_hook(self, fn):
        """Call fn(module, input, output) after every forward; returns a function that removes it."""
        self._hooks.append(fn)
        return lambda: self._hooks.remove(fn) if fn in self._hooks else None

    # ----- calling ------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in self._hooks:
            hook(self, args[0] if args else None, out)
        return out

    # ----- walking the tree ---------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """(name, module) for this module and every descendant, depth first, in definition order."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_parameters(self):
        """(dotted name, Parameter) in definition (= forward) order, e.g. 'stage1.block0.conv_a.weight'."""
        for prefix, module in self.named_modules():
            for name, p in module._params.items():
                yield (f"{prefix}.{name}" if prefix else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for prefix, module in self.named_modules():
            for name in module._buffers:
                yield (f"{prefix}.{name}" if prefix else name), getattr(module, name)

    @property
    def dtype(self):
        """The dtype the module computes in: its parameters' (float32, or float64 for checks)."""
        return next(p for _, p in self.named_parameters()).dtype

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True):
        """Training mode (BN uses batch statistics) for this module and all descendants."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Inference mode (BN uses its stored statistics)."""
        return self.train(False)

    # ----- state --------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of every parameter and buffer, keyed by dotted name, in definition order."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.data.copy()
        for name, b in self.named_buffers():
            state[name] = np.array(b, copy=True)
        return state

    def load_state_dict(self, state, strict: bool = True):
        """Copy arrays into parameters and buffers (shapes must match; dtype of `state` is kept)."""
        params, buffers = dict(self.named_parameters()), dict(self.named_buffers())
        if strict:
            missing = [k for k in list(params) + list(buffers) if k not in state]
            unexpected = [k for k in state if k not in params and k not in buffers]
            if missing or unexpected:
                raise KeyError(f"state_dict mismatch: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                               f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        for name, p in params.items():
            if name in state:
                value = np.asarray(state[name])
                if value.shape != p.shape:
                    raise ValueError(f"{name}: shape {value.shape} in state, {p.shape} in model")
                p.data = value.copy()
        for name in buffers:
            if name in state:
                owner, attr = self._owner(name)
                value = np.asarray(state[name])
                old = getattr(owner, attr)
                if np.shape(old) != value.shape:
                    raise ValueError(f"{name}: shape {value.shape} in state, {np.shape(old)} in model")
                setattr(owner, attr, value.copy())
        return self

    def _owner(self, dotted: str):
        *path, attr = dotted.split(".")
        module = self
        for part in path:
            module = module._modules[part]
        return module, attr

    def save(self, path):
        """Write state_dict() to an .npz file, atomically (a temporary file, then os.replace)."""
        save_npz(path, self.state_dict())

    def load(self, path):
        with np.load(path, allow_pickle=False) as f:
            return self.load_state_dict({k: f[k] for k in f.files})

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ----- printing -----------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"
