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
        self._freed = False  # its node was released by a backward(): no second pass through it
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

    def item(self) -> float:
        return self.data.item()

    def detach(self) -> Tensor:
        return Tensor(self.data)

    def retain_grad(self) -> Tensor:
        """Keep `.grad` on this intermediate tensor after backward (probes read dL/dz this way)."""
        self._retain = True
        return self

    def zero_grad(self):
        self.grad = None

    # ----- backward -----------------------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) · grad into `.grad` of every leaf that requires a gradient.

        grad defaults to 1 for a one-element tensor. The graph is freed as it is walked
        (saved arrays released), so call backward once per forward: a second pass through a
        freed part raises RuntimeError (leaves are never freed).
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
            if t._freed:
                raise RuntimeError("backward() through a graph that an earlier backward() has already freed: "
                                   "call backward once per forward, or compute the forward again")
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
            t._node, t._freed = None, True  # free the graph (and the arrays it saved) as we go
            node.ctx = None

    # Operators (+, -, *, /, **, @, [], sum, mean, reshape, transpose, exp, log) are bound to
    # this class in one place, tinybin/ops/arith.py, where the ops they call are defined.


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
    def from_pair(cls, name: str, forward, backward, doc: str | None = None) -> type[Function]:
        """A Function that calls a `forward(*arrays, **opts) -> (out, cache)` /
        `backward(dout, cache) -> grads` pair: the usual shape of a tinybin op."""

        def fwd(ctx, *arrays, **options):
            out, ctx.cache = forward(*arrays, **options)
            return out

        def bwd(ctx, dout):
            return backward(dout, ctx.cache)

        return type(name, (cls,), {"forward": staticmethod(fwd), "backward": staticmethod(bwd),
                                   "__doc__": doc or forward.__doc__, "__module__": forward.__module__})
