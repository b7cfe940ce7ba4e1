"""Lesson 00 — autograd from scratch.

Question
    How does `loss.backward()` find every gradient, and what are the three traps an engine must
    close: a value used twice, the order in which nodes are visited, and recording a graph when
    nobody wants one?

Run
    python lessons/00_autograd.py

Expected output (a full run)
    L = (a*b + c)^2 + a  at a=2, b=-3, c=10:  L = 18
      dL/da  hand  -23   scalar engine  -23   tinybin  -23
      dL/db  hand   16   scalar engine   16   tinybin   16
      dL/dc  hand    8   scalar engine    8   tinybin    8
    backward visits: L, d*d, d, c, a*b, b, a
      (outputs before inputs; a comes last because both L and a*b must hand it a gradient first)
    gradient on each edge (child -> parent: local derivative × the child's gradient):
      L -> d*d 1 × 1 = 1;  L -> a 1 × 1 = 1;  d*d -> d 4 × 1 = 4, twice;  d -> a*b 1 × 8 = 8;
      d -> c 1 × 8 = 8;  a*b -> a -3 × 8 = -24;  a*b -> b 2 × 8 = 16
      a receives (1) + (-24) = -23; d receives 4 + 4 = 8
    wrote runs/lessons/00_autograd/computation_graph.png   (the graph, each edge labelled so)
    b = a + a; c = b + b:  dc/da = 4 (+= accumulation), 1 if backward assigned instead of adding; tinybin 4
    chain of 20000 ops: scalar engine (recursive topological sort) RecursionError;
      tinybin (iterative) d/dx = 1.0001^20000 = 7.388 (exact 7.388)
    no_grad: y.requires_grad False, y has no graph

Takeaway
    Reverse mode is: sort the graph so each node comes after everything that consumes it, then
    walk it once, each node adding (never assigning) its local derivative times the incoming
    gradient into its inputs. The figure shows it edge by edge: a gets −24 through a*b and 1
    straight from L, and d gets 4 from each of its two uses in d*d. `no_grad()` switches recording off, e.g. for SGD updates.

Try next
    --depth 100000   a longer chain (tinybin's walk is iterative, so any depth works)
"""
import math
import sys

import numpy as np

import tinybin as tb

import lesson

NEEDS_DATA = False
FIGURES = ["computation_graph.png"]
RESULT_KEYS = ["L", "grads_hand", "grads_scalar", "grads_tinybin", "edges", "accumulate", "deep_chain", "no_grad"]


# ----- a scalar autograd engine, the whole idea in ~40 lines ----------------------------------
class Value:
    """A number that remembers how it was made: its parents and how to pass a gradient back."""

    accumulate = True  # flip to False to see what assigning instead of adding breaks

    def __init__(self, data, parents=(), op="", label=""):
        self.data, self.grad = float(data), 0.0
        self.parents, self.op, self.label = parents, op, label
        self._backward = lambda: None  # pushes self.grad into the parents' .grad

    def _add_grad(self, g):
        # The one line that matters: a value used by several consumers receives a gradient from
        # each of them, so they must add up.
        self.grad = self.grad + g if Value.accumulate else g

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")

        def backward():                      # d(s+o)/ds = 1, d(s+o)/do = 1
            self._add_grad(out.grad)
            other._add_grad(out.grad)
        out._backward = backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")

        def backward():                      # d(s·o)/ds = o, d(s·o)/do = s
            self._add_grad(other.data * out.grad)
            other._add_grad(self.data * out.grad)
        out._backward = backward
        return out

    def backward(self):
        # Topological order by recursive depth-first search, as the smallest engines do it.
        # Each node is appended after all its parents, so reversed, every node comes before
        # the nodes it was computed from: its gradient is complete when its turn comes.
        order, seen = [], set()

        def visit(v):
            if id(v) not in seen:
                seen.add(id(v))
                for p in v.parents:
                    visit(p)
                order.append(v)
        visit(self)
        self.grad = 1.0
        for v in reversed(order):
            v._backward()
        return [v for v in reversed(order)]


def edge_gradients(order):
    """(parent, child, local derivative, gradient passed) for every edge, read after backward:
    the child hands its parent local · child.grad (an input used twice has two edges)."""
    edges = []
    for v in order:
        if v.op == "+":
            edges += [(p, v, 1.0, v.grad) for p in v.parents]
        elif v.op == "*":
            s, o = v.parents
            edges += [(s, v, o.data, o.data * v.grad), (o, v, s.data, s.data * v.grad)]
    return edges


def draw_graph(edges, positions):
    """The graph left to right (forward); each edge labelled with the gradient it carries back."""
    fig, ax = lesson.pyplot().subplots(figsize=(10, 4.2))
    pairs = {}
    for p, v, local, g in edges:
        k = pairs[(id(p), id(v))] = pairs.get((id(p), id(v)), -1) + 1   # a second edge p -> v bends
        rad = 0.35 * (1 if k else -1) if p is v.parents[0] and v.parents[0] is v.parents[-1] else 0.0
        (x0, y0), (x1, y1) = positions[p.label], positions[v.label]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "->", "lw": 1.2, "color": "0.4", "shrinkA": 22, "shrinkB": 22,
                                    "connectionstyle": f"arc3,rad={rad}"})
        xm, ym = (x0 + x1) / 2, (y0 + y1) / 2 + (0.32 if rad > 0 else -0.32 if rad < 0 else 0.0)
        ax.text(xm, ym, f"∂{v.label}/∂{p.label} = {local:g}\n← {g:g}", ha="center", va="center", fontsize=8,
                color="tab:red", bbox={"fc": "white", "ec": "none", "alpha": 0.85})
    nodes = {e[0].label: e[0] for e in edges} | {e[1].label: e[1] for e in edges}
    for label, v in nodes.items():
        x, y = positions[label]
        ax.text(x, y, f"{label}\n= {v.data:g}\ngrad {v.grad:g}", ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round", "fc": "tab:blue" if not v.parents else "lightsteelblue", "alpha": 0.3})
    ax.set_xlim(-0.6, 4.6)
    ax.set_ylim(-0.6, 2.6)
    ax.axis("off")
    ax.set_title("L = (a·b + c)² + a: forward left to right; in red each edge's local derivative and the "
                 "gradient it carries back (local × the child's grad)", fontsize=9)
    return fig


def main():
    parser = lesson.parser(__doc__, __file__)
    parser.add_argument("--depth", type=int, default=20000, help="length of the chain of ops in part 3")
    args = parser.parse_args()
    if args.quick:
        args.depth = min(args.depth, 5000)
    results = {}

    # ----- 1. the same function, three ways --------------------------------------------------
    a0, b0, c0 = 2.0, -3.0, 10.0
    a, b, c = Value(a0, label="a"), Value(b0, label="b"), Value(c0, label="c")
    ab = a * b; ab.label = "a*b"
    d = ab + c; d.label = "d"                      # d = a·b + c = 4
    sq = d * d; sq.label = "d*d"
    L = sq + a; L.label = "L"                      # a is used twice: in d and here
    order = L.backward()
    # By hand: L = d² + a, d = a·b + c  =>  dL/dd = 2d, dL/da = 2d·b + 1, dL/db = 2d·a, dL/dc = 2d
    dv = a0 * b0 + c0
    hand = {"a": 2 * dv * b0 + 1, "b": 2 * dv * a0, "c": 2 * dv}
    scalar = {"a": a.grad, "b": b.grad, "c": c.grad}

    ta, tb_, tc = (tb.Tensor(np.array(v), requires_grad=True) for v in (a0, b0, c0))
    td = ta * tb_ + tc
    tL = td * td + ta
    tL.backward()
    tiny = {"a": float(ta.grad), "b": float(tb_.grad), "c": float(tc.grad)}

    print(f"L = (a*b + c)^2 + a  at a={a0:g}, b={b0:g}, c={c0:g}:  L = {L.data:g}")
    for k in "abc":
        print(f"  dL/d{k}  hand {hand[k]:4g}   scalar engine {scalar[k]:4g}   tinybin {tiny[k]:4g}")
    names = [v.label for v in order]
    print("backward visits:", ", ".join(names))
    print("  (outputs before inputs; a comes last because both L and a*b must hand it a gradient first)")
    results.update(L=L.data, grads_hand=hand, grads_scalar=scalar, grads_tinybin=tiny, order=names)
    edges = edge_gradients(order)
    print("gradient on each edge (child -> parent: local derivative × the child's gradient):")
    for p, v, local, g in edges:
        print(f"  {v.label:4s} -> {p.label:4s}  {local:4g} × {v.grad:g} = {g:g}")
    print(f"  a receives {' + '.join(f'({g:g})' for p, v, _, g in edges if p is a)} = {a.grad:g}; "
          f"d receives {' + '.join(f'{g:g}' for p, v, _, g in edges if p is d)} = {d.grad:g}")
    results["edges"] = [{"from": v.label, "to": p.label, "local": local, "grad": g} for p, v, local, g in edges]
    positions = {"a": (0, 2), "b": (0, 1), "c": (0, 0), "a*b": (1.3, 1.5), "d": (2.3, 0.8), "d*d": (3.4, 0.8),
                 "L": (4.2, 2.0)}
    lesson.save_figure(draw_graph(edges, positions), args, FIGURES[0])

    # ----- 2. a reused value: gradients must accumulate --------------------------------------
    x = Value(1.5)
    y = x + x
    z = y + y                                      # z = 4x, so dz/dx = 4
    z.backward()
    right = x.grad
    Value.accumulate = False                       # the bug: assign instead of add
    x = Value(1.5)
    y = x + x
    z = y + y
    z.backward()
    wrong = x.grad
    Value.accumulate = True
    t = tb.Tensor(np.array(1.5), requires_grad=True)
    tb2 = t + t
    (tb2 + tb2).backward()                         # the same two lines with tinybin
    print(f"b = a + a; c = b + b:  dc/da = {right:g} (+= accumulation), {wrong:g} if backward "
          f"assigned instead of adding; tinybin {float(t.grad):g}")
    results["accumulate"] = {"right": right, "assigning": wrong, "tinybin": float(t.grad)}

    # ----- 3. a deep graph: recursion vs an explicit stack -----------------------------------
    # Python stops recursing at ~1000 frames; a training step of a deep net can be longer.
    x = Value(1.0)
    y = x
    for _ in range(args.depth):
        y = y * 1.0001
    try:
        y.backward()
        scalar_deep = f"ok, d/dx = {x.grad:.4g}"
    except RecursionError:
        scalar_deep = "RecursionError"
    tx = tb.Tensor(np.array([1.0]), requires_grad=True)   # float64 keeps the product exact
    ty = tx
    for _ in range(args.depth):
        ty = ty * 1.0001
    ty.backward(np.array([1.0]))
    exact = 1.0001 ** args.depth
    print(f"chain of {args.depth} ops: scalar engine (recursive topological sort) {scalar_deep};")
    print(f"  tinybin (iterative) d/dx = 1.0001^{args.depth} = {tx.grad[0]:.4g} (exact {exact:.4g})")
    results["deep_chain"] = {"depth": args.depth, "scalar_engine": scalar_deep,
                             "tinybin_grad": float(tx.grad[0]), "exact": exact,
                             "python_recursion_limit": sys.getrecursionlimit()}

    # ----- 4. no_grad: compute without recording ---------------------------------------------
    w = tb.Tensor(np.ones(3), requires_grad=True)
    with tb.no_grad():
        y = w * 2.0                                # e.g. an SGD update or an evaluation pass
    recorded = y._node is not None
    print(f"no_grad: y.requires_grad {y.requires_grad}, y has {'a' if recorded else 'no'} graph")
    results["no_grad"] = {"requires_grad": y.requires_grad, "graph_recorded": recorded}
    assert math.isclose(tx.grad[0], exact, rel_tol=1e-9)

    lesson.finish(args, results)


if __name__ == "__main__":
    main()
