"""The autograd engine: accumulation, deep graphs, no_grad, broadcasting, dtypes."""
import numpy as np
import pytest

import tinybin as tb
from tinybin.ops import arith


def test_reused_node_accumulates():
    a = tb.Tensor(np.array([1.5, -2.0]), requires_grad=True)
    b = a + a
    c = b + b                      # c = 4a: every path must be counted
    c.backward(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(a.grad, [4.0, 8.0])


def test_same_tensor_on_both_sides_of_mul():
    a = tb.Tensor(np.array([3.0]), requires_grad=True)
    (a * a).backward(np.array([1.0]))  # d(a²)/da = 2a
    np.testing.assert_array_equal(a.grad, [6.0])


def test_leaf_grad_accumulates_across_backward_calls():
    a = tb.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (a * 3).sum().backward()
    (a * 3).sum().backward()
    np.testing.assert_array_equal(a.grad, [6.0, 6.0])


def test_long_chain_has_no_recursion_limit():
    x = tb.Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001 + 0.0
    y.backward(np.array([1.0]))
    np.testing.assert_allclose(x.grad, [1.0001 ** 5000], rtol=1e-9)


def test_no_grad_records_nothing():
    x = tb.Tensor(np.ones(3), requires_grad=True)
    with tb.no_grad():
        y = (x * 2).sum()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        y.backward()
    assert tb.is_grad_enabled()


def test_broadcast_gradients_reduce_to_input_shape():
    rng = np.random.default_rng(0)
    a = tb.Tensor(rng.standard_normal((4, 3)), requires_grad=True)
    b = tb.Tensor(rng.standard_normal((3,)), requires_grad=True)
    c = tb.Tensor(rng.standard_normal((4, 1)), requires_grad=True)
    tb.gradcheck(lambda a, b, c: (a * b - c) / (b * b + 1.0), a, b, c)


@pytest.mark.parametrize("fn", [
    lambda x: x.sum(axis=1),
    lambda x: x.mean(axis=(0, 2), keepdims=True),
    lambda x: x.mean(),
    lambda x: x.reshape(6, 4).transpose(),
    lambda x: x.transpose(2, 0, 1),
    lambda x: x[np.array([1, 1, 0])],       # repeated rows: gradients add
    lambda x: (x * 0.3).exp(),
    lambda x: (x * x + 1.0).log(),
    lambda x: -(x ** 3),
    lambda x: 2.0 - x,
    lambda x: 1.0 / (x * x + 1.0),
])
def test_operator_gradients(fn):
    x = tb.Tensor(np.random.default_rng(1).standard_normal((2, 3, 4)), requires_grad=True)
    tb.gradcheck(fn, x)


def test_matmul_gradients_and_shape_error():
    rng = np.random.default_rng(2)
    a = tb.Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = tb.Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    tb.gradcheck(lambda a, b: a @ b, a, b)
    with pytest.raises(ValueError, match=r"\(3, 4\) @ \(3, 4\)"):
        arith.matmul(a, a)


def test_dtypes():
    assert tb.Tensor([1.0, 2.0]).dtype == np.float32          # Python data: float32 default
    x64 = tb.Tensor(np.ones(2), requires_grad=True)
    y = (x64 * 2 + 1).mean()                                   # scalars follow the tensor
    assert y.dtype == np.float64
    x32 = tb.Tensor(np.ones(2, np.float32), requires_grad=True)
    assert (x32 * 2 - 1).sum().dtype == np.float32
    with pytest.raises(ValueError, match="floating-point"):
        tb.Tensor(np.array([1, 2]), requires_grad=True)


def test_backward_needs_scalar_or_grad():
    x = tb.Tensor(np.ones(3), requires_grad=True)
    with pytest.raises(ValueError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="does not match"):
        (x * 2).backward(np.ones(4))


def test_retain_grad_keeps_intermediate_gradient():
    x = tb.Tensor(np.array([1.0, 2.0]), requires_grad=True)
    z = (x * 3).retain_grad()
    (z * z).sum().backward()
    np.testing.assert_allclose(z.grad, 2 * z.data)
    np.testing.assert_allclose(x.grad, 3 * 2 * z.data)


def test_graph_does_not_keep_intermediate_arrays_alive():
    """Nodes point at producer nodes, not tensors: an intermediate array that no op saved dies
    with its tensor, and backward still reaches the leaf through it."""
    import gc
    import weakref

    x = tb.Tensor(np.arange(4.0), requires_grad=True)
    h = x + 1.0                      # Add saves nothing of its inputs
    out = (h + 2.0) * 3.0
    h_data = weakref.ref(h.data)
    del h
    gc.collect()
    assert h_data() is None
    out.sum().backward()
    np.testing.assert_allclose(x.grad, np.full(4, 3.0))


def test_backward_releases_saved_arrays_as_it_goes():
    x = tb.Tensor(np.arange(1.0, 5.0), requires_grad=True)
    y = x * x                        # Mul saves x and x
    node = y._node
    y.sum().backward()
    assert node.freed and node.ctx is None and node.inputs == ()
    with pytest.raises(RuntimeError, match="already freed"):
        y.sum().backward()


def test_retain_grad_does_not_keep_the_tensor_alive():
    import gc
    import weakref

    x = tb.Tensor(np.ones(3), requires_grad=True)
    z = (x * 2).retain_grad()
    out = (z * 3).sum()
    z_ref = weakref.ref(z)
    del z
    gc.collect()
    assert z_ref() is None
    out.backward()                   # no tensor to keep the gradient on: nothing breaks
    np.testing.assert_allclose(x.grad, np.full(3, 6.0))
