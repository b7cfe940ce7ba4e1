"""Tensor, Function and the reverse-mode autograd engine.

A `Tensor` wraps a NumPy array (`.data`) and, if it requires a gradient, remembers the
`Function` that produced it. `backward()` walks that graph once, in reverse topological order,
calling each Function's hand-written `backward` and *accumulating* (`+=`) gradients into inputs
that are used more than once.

Every op is a forward/backward pair of plain NumPy functions (see `tinybin/ops/`); a Function
only calls the pair. The graph walk is iterative, so a chain of 100,000 ops is fine.
"""
from __future__ import annotations

import contextlib
import itertools

import numpy as np

_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Within this block ops record nothing: no graph, no saved arrays (inference, SGD updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def _as_array(data, dtype=None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (np.ndarray, np.generic)):  # numpy arrays and scalars keep their dtype
        return np.asarray(data, dtype=dtype)
    # Python numbers and lists become float32 unless told otherwise: the engine's default dtype.
    return np.asarray(data, dtype=dtype or np.float32)


class Tensor:
    """An n-d array that can record how it was computed.

    Tensor(array, requires_grad=False): a float ndarray keeps its dtype (float32 for training,
    float64 for gradient checks); Python numbers and lists become float32.
    """

    __array_priority__ = 1000  # make `ndarray * Tensor` call Tensor.__rmul__
    _ids = itertools.count()

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data: np.ndarray = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise ValueError(f"only floating-point tensors can require a gradient, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self._node: _Node | None = None  # the Function call that produced this tensor
        self._retain = False
        self._id = next(Tensor._ids)

    # ----- array-like surface -------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    is_leaf = property(lambda self: self._node is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, threshold=8)}, dtype={self.dtype}{grad})"

    def numpy(self) -> np.ndarray:
        return self.data

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def retain_grad(self) -> "Tensor":
        """Keep `.grad` on this intermediate tensor after backward (probes read dL/dz this way)."""
        self._retain = True
        return self

    def zero_grad(self):
        self.grad = None

    # ----- backward -----------------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) · grad into `.grad` of every leaf that requires a gradient.

        grad defaults to 1 for a one-element tensor. The graph is freed as it is walked
        (saved arrays released), so call backward once per forward.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require a gradient "
                               "(was it computed under no_grad(), or from constants only?)")
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"backward() without a gradient needs a one-element tensor, got shape {self.shape}")
            grad = np.ones_like(self.data)
        grad = _as_array(grad, self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"gradient shape {grad.shape} does not match tensor shape {self.shape}")

        order = _topological_order(self)
        grads = {self._id: grad}
        for t in order:  # outputs before inputs
            g = grads.pop(t._id, None)
            if g is None:
                continue
            node = t._node
            if node is None or t._retain:  # a leaf, or an intermediate kept on request
                t.grad = g.copy() if t.grad is None else t.grad + g
            if node is None:
                continue
            in_grads = node.fn.backward(node.ctx, g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            if len(in_grads) != len(node.inputs):
                raise RuntimeError(f"{node.fn.__name__}.backward returned {len(in_grads)} gradients "
                                   f"for {len(node.inputs)} inputs")
            for inp, ig in zip(node.inputs, in_grads):
                if ig is None or inp is None or not inp.requires_grad:
                    continue
                if ig.shape != inp.shape:
                    raise RuntimeError(f"{node.fn.__name__}.backward gave a gradient of shape {ig.shape} "
                                       f"for an input of shape {inp.shape}")
                if inp._id in grads:
                    grads[inp._id] = grads[inp._id] + ig  # a reused input: gradients add up
                else:
                    grads[inp._id] = ig
            t._node = None  # free the graph (and the arrays it saved) as we go
            node.ctx = None

    # ----- operators (defined in tinybin/ops, imported lazily to avoid an import cycle) -----
    def __add__(self, other):
        return _ops().add(self, other)

    def __radd__(self, other):
        return _ops().add(other, self)

    def __sub__(self, other):
        return _ops().sub(self, other)

    def __rsub__(self, other):
        return _ops().sub(other, self)

    def __mul__(self, other):
        return _ops().mul(self, other)

    def __rmul__(self, other):
        return _ops().mul(other, self)

    def __truediv__(self, other):
        return _ops().div(self, other)

    def __rtruediv__(self, other):
        return _ops().div(other, self)

    def __neg__(self):
        return _ops().neg(self)

    def __pow__(self, exponent):
        return _ops().power(self, exponent)

    def __matmul__(self, other):
        return _ops().matmul(self, other)

    def __rmatmul__(self, other):
        return _ops().matmul(other, self)

    def __getitem__(self, index):
        return _ops().getitem(self, index)

    def sum(self, axis=None, keepdims=False):
        return _ops().sum(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops().mean(self, axis=axis, keepdims=keepdims)

    def reshape(self, *shape):
        return _ops().reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)

    def transpose(self, *axes):
        return _ops().transpose(self, axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None))

    @property
    def T(self):
        return self.transpose()

    def exp(self):
        return _ops().exp(self)

    def log(self):
        return _ops().log(self)


def _ops():
    from .ops import arith
    return arith


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors reachable from root, each after every tensor that consumes it (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, children_done = stack.pop()
        if children_done:
            order.append(t)
            continue
        if t._id in visited:
            continue
        visited.add(t._id)
        stack.append((t, True))
        if t._node is not None:
            for inp in t._node.inputs:
                if inp is not None and inp.requires_grad and inp._id not in visited:
                    stack.append((inp, False))
    order.reverse()
    return order


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad: tuple[bool, ...] = needs_input_grad
        self.saved: tuple = ()

    def save_for_backward(self, *values):
        self.saved = values


class _Node:
    __slots__ = ("fn", "ctx", "inputs")

    def __init__(self, fn, ctx, inputs):
        self.fn, self.ctx, self.inputs = fn, ctx, inputs


class Function:
    """One differentiable op. Subclasses define

        forward(ctx, *arrays, **options) -> ndarray
        backward(ctx, dout) -> one gradient (ndarray or None) per positional input

    and are called as `MyOp.apply(*tensors, **options)`. Positional arguments are the
    differentiable inputs (Tensors, arrays or numbers); keyword arguments are options.
    """

    @staticmethod
    def forward(ctx, *args, **kwargs):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, dout):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **options) -> Tensor:
        dtype = next((t.dtype for t in inputs if isinstance(t, Tensor) and t.dtype.kind == "f"), None)
        # None stands for an absent optional input (e.g. batch norm without weight)
        tensors = tuple(t if t is None or isinstance(t, Tensor)
                        else Tensor(_as_array(t, dtype if np.ndim(t) == 0 else None)) for t in inputs)
        needs = tuple(t is not None and t.requires_grad for t in tensors)
        record = _grad_enabled and any(needs)
        ctx = Context(needs)
        out = cls.forward(ctx, *(None if t is None else t.data for t in tensors), **options)
        result = Tensor(np.asarray(out), requires_grad=record)
        if record:
            result._node = _Node(cls, ctx, tensors)
        return result

    @classmethod
    def from_pair(cls, name: str, forward, backward, doc: str | None = None) -> type["Function"]:
        """A Function that calls a `forward(*arrays, **opts) -> (out, cache)` /
        `backward(dout, cache) -> grads` pair: the usual shape of a tinybin op."""

        def fwd(ctx, *arrays, **options):
            out, ctx.cache = forward(*arrays, **options)
            return out

        def bwd(ctx, dout):
            return backward(dout, ctx.cache)

        return type(name, (cls,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd),
                                   "__doc__": doc or forward.__doc__, "__module__": forward.__module__})
