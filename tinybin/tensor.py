"""Tensor, Function and the reverse-mode autograd engine.

A `Tensor` wraps a NumPy array (`.data`) and, if it requires a gradient, remembers the
`Function` call that produced it (a node). `backward()` walks that graph once, in reverse
topological order, calling each Function's hand-written `backward` and *accumulating* (`+=`)
gradients into inputs that are used more than once.

The graph is made of nodes, not tensors: a node points at the nodes that produced its inputs
(and at leaf tensors such as parameters), never at intermediate tensors. So an intermediate
array lives only as long as the user's code or some node's saved state (`ctx`) holds it: a
conv output that the next op does not save is freed as soon as the forward moves on, and the
walk releases each node's saved arrays as soon as it has used them. (With tensors as the
vertices, every intermediate array would stay alive until backward() ended.)

Every op is a forward/backward pair of plain NumPy functions (see `tinybin/ops/`); a Function
only calls the pair. The graph walk is iterative, so a chain of 100,000 ops is fine.
"""
from __future__ import annotations

import contextlib
import weakref

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

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data: np.ndarray = _as_array(data, dtype)
        if requires_grad and self.data.dtype.kind != "f":
            raise ValueError(f"only floating-point tensors can require a gradient, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad: np.ndarray | None = None
        self._node: _Node | None = None  # the Function call that produced this tensor

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
        if self._node is not None:
            self._node.retained = weakref.ref(self)  # weak: the graph must not keep the tensor alive
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

        root = self._node
        if root is None:                                   # backward() on a leaf: its own gradient
            self.grad = grad.copy() if self.grad is None else self.grad + grad
            return
        order = _topological_order(root)                   # consumers before producers
        order.reverse()                                    # pop() takes them in that order
        grads = {id(root): grad}
        while order:
            node = order.pop()                             # dropped from the list: freed when done
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node.freed:
                raise RuntimeError("backward() through a graph that an earlier backward() has already freed: "
                                   "call backward once per forward, or compute the forward again")
            kept = node.retained() if node.retained is not None else None
            if kept is not None:                           # an intermediate kept on request
                kept.grad = g.copy() if kept.grad is None else kept.grad + g
            in_grads = node.fn.backward(node.ctx, g)
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            if len(in_grads) != len(node.inputs):
                raise RuntimeError(f"{node.fn.__name__}.backward returned {len(in_grads)} gradients "
                                   f"for {len(node.inputs)} inputs")
            for inp, ig in zip(node.inputs, in_grads):
                if ig is None or inp is None:              # no gradient wanted for this input
                    continue
                if ig.shape != inp.shape:
                    raise RuntimeError(f"{node.fn.__name__}.backward gave a gradient of shape {ig.shape} "
                                       f"for an input of shape {inp.shape}")
                if isinstance(inp, Tensor):                # a leaf: its .grad accumulates
                    inp.grad = ig.copy() if inp.grad is None else inp.grad + ig
                elif id(inp) in grads:
                    grads[id(inp)] = grads[id(inp)] + ig   # a reused input: gradients add up
                else:
                    grads[id(inp)] = ig
            node.ctx, node.inputs, node.freed = None, (), True  # release the saved arrays now

    # Operators (+, -, *, /, **, @, [], sum, mean, reshape, transpose, exp, log) are bound to
    # this class in one place, tinybin/ops/arith.py, where the ops they call are defined.


def _topological_order(root: _Node) -> list[_Node]:
    """Nodes reachable from root, each after every node that consumes it (iterative DFS)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for inp in node.inputs:
            if isinstance(inp, _Node) and id(inp) not in visited:
                stack.append((inp, False))
    order.reverse()
    return order


class Context:
    """What a Function's forward leaves for its backward."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad: tuple[bool, ...] = needs_input_grad


class _Node:
    """One recorded Function call. inputs holds, per positional input, the node that produced
    it, the leaf Tensor itself (its .grad receives the gradient), or None (no gradient needed)."""
    __slots__ = ("fn", "ctx", "inputs", "shape", "retained", "freed")

    def __init__(self, fn, ctx, inputs, shape):
        self.fn, self.ctx, self.inputs, self.shape = fn, ctx, inputs, shape  # shape: the output's
        self.retained = None   # a weak reference to the output tensor, after retain_grad()
        self.freed = False     # released by a backward(): no second pass through it


class Function:
    """One differentiable op. Subclasses define

        forward(ctx, *arrays, **options) -> ndarray
        backward(ctx, dout) -> one gradient (ndarray or None) per positional input

    and are called as `MyOp.apply(*tensors, **options)`. Positional arguments are the
    differentiable inputs (Tensors, arrays or numbers); keyword arguments are options.

    has_aux = True: forward returns (ndarray, aux), and apply returns (Tensor, aux): aux is
    something computed on the way that no gradient flows through (batch norm's statistics).
    """

    has_aux = False

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
        out, aux = out if cls.has_aux else (out, None)
        result = Tensor(np.asarray(out), requires_grad=record)
        if record:
            edges = tuple(None if t is None or not t.requires_grad else (t if t._node is None else t._node)
                          for t in tensors)
            result._node = _Node(cls, ctx, edges, result.shape)
        return (result, aux) if cls.has_aux else result

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
