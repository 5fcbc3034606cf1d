"""Graph semantics: the order of the chain rule, accumulation, grad mode, and the errors.

The values compared with are worked out by hand in the comments (or are the
numbers micrograd's README reports, which it checks against PyTorch), never
the engine's own output. MATH F6 is the rule under test throughout.

Run: python -m pytest tests/test_autograd.py -q
"""
import sys
import threading

import numpy as np
import pytest

import engine.functional as F
from engine import Tensor, concat, enable_grad, is_grad_enabled, no_grad
from engine.autograd import Function, topological_order


def leaf(value):
    return Tensor(np.array(value, dtype=np.float64), requires_grad=True)


# ---------------------------------------------------------------- the chain rule's order and sums

def test_reuse_accumulates_all_paths():
    """micrograd's "why a topological sort?": a reaches c along four paths, dc/da = 4."""
    a = leaf(3.0)
    b = a + a
    c = b + b
    c.backward()
    assert c.item() == 12.0
    assert a.grad == 4.0


def test_topological_order_puts_every_node_before_its_inputs():
    a, k = leaf(3.0), Tensor(2.0)  # k is a constant: not part of the gradient graph
    b = a + a
    c = b * k
    d = c + b  # b is used by c and by d: it must come after both
    order = topological_order(d)
    assert order[0] is d
    assert sorted(map(id, order)) == sorted(map(id, [a, b, c, d]))  # each node once, no k
    position = {id(t): i for i, t in enumerate(order)}
    for t in order:
        if t._ctx is not None:
            for u in t._ctx.inputs:
                if u.requires_grad:
                    assert position[id(u)] > position[id(t)]
    assert position[id(b)] > position[id(c)]


def test_micrograd_expression():
    """micrograd README (checked there against PyTorch): g = 24.7041, dg/da = 138.8338,
    dg/db = 645.5773. Uses +, -, *, /, **, relu and Python scalars on both sides."""
    a, b = leaf(-4.0), leaf(2.0)
    c = a + b
    d = a * b + b ** 3
    c = c + (c + 1)
    c = c + (1 + c + (-a))
    d = d + (d * 2 + (b + a).relu())
    d = d + (3 * d + (b - a).relu())
    e = c - d
    f = e ** 2
    g = f / 2.0
    g = g + 10.0 / f
    g.backward()
    assert abs(g.item() - 24.7041) < 1e-4
    assert abs(a.grad - 138.8338) < 1e-4
    assert abs(b.grad - 645.5773) < 1e-4


def test_micrograd_sanity_check():
    """x = -4: z = 3x + 2 = -10, q = relu(z) + z x = 40, h = relu(z^2) = 100,
    y = h + q + q x = -20; dy/dx = 2z*3 + (3x + z) (1 + x) + q = -60 + 66 + 40 = 46."""
    x = leaf(-4.0)
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    y = h + q + q * x
    y.backward()
    assert y.item() == -20.0
    assert x.grad == 46.0


def test_chain_of_10000_ops_is_not_recursive():
    """d/dx of x * c^n is c^n; the walk must not use the Python stack (limit set to 1000)."""
    x = leaf(1.0)
    y, c, n = x, 1.0001, 10_000
    for _ in range(n):
        y = y * c
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        y.backward()
    finally:
        sys.setrecursionlimit(limit)
    np.testing.assert_allclose(x.grad, c ** n, rtol=1e-9)
    del y  # freeing the 10,000-long chain must not crash either


def test_gradients_accumulate_across_backward_calls_on_fresh_graphs():
    """Like PyTorch: .grad is summed into until someone sets it to None (zero_grad)."""
    x = leaf([1.0, 2.0])
    (x * x).sum().backward()  # 2x
    (3 * x).sum().backward()  # + 3
    np.testing.assert_array_equal(x.grad, [5.0, 7.0])
    x.grad = None
    (3 * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_only_inputs_that_require_grad_get_gradients():
    a, b = leaf([1.0, 2.0]), Tensor([3.0, 4.0])
    (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad, [3.0, 4.0])
    assert b.grad is None and not b.requires_grad


def test_non_leaf_gradients_are_not_kept_unless_retain_grad():
    x = leaf([1.0, -2.0])
    y = x * 3  # y = [3, -6]
    z = x * 2
    y.retain_grad()
    (y * y + z).sum().backward()
    np.testing.assert_array_equal(y.grad, [6.0, -12.0])  # d(y^2)/dy = 2y
    assert z.grad is None
    np.testing.assert_array_equal(x.grad, [18 + 2, -36 + 2])  # 2y * 3 + 2
    assert not y.is_leaf and x.is_leaf


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])  # 2 * 2x
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_twice_through_a_freed_graph_raises():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])  # the failed call added nothing


def test_backward_through_a_shared_freed_subgraph_raises():
    x = leaf(2.0)
    h = x * x
    (h * 1.0).backward()
    with pytest.raises(RuntimeError):
        (h * 2.0).backward()


def test_explicit_grad_argument():
    x = leaf([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    g = np.arange(6.0).reshape(3, 2).T  # a non-contiguous array
    (x * 2).backward(g)
    np.testing.assert_array_equal(x.grad, 2 * g)
    x.grad = None
    (x * 2).backward(Tensor(g))
    np.testing.assert_array_equal(x.grad, 2 * g)
    x.grad = None
    (x * 2).backward(g.tolist())
    np.testing.assert_array_equal(x.grad, 2 * g)


def test_explicit_grad_of_the_wrong_shape_raises():
    x = leaf([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        (x * 2).backward(np.ones(2))
    with pytest.raises(ValueError):
        (x * 2).backward(np.ones((3, 1)))


def test_implicit_grad_needs_a_scalar():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    y = leaf([[3.0]])  # one element: the implied gradient is 1
    (y * 2).backward()
    np.testing.assert_array_equal(y.grad, [[2.0]])


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (Tensor([1.0]) * 2).sum().backward()
    x = leaf([1.0])
    with no_grad():
        y = (x * 2).sum()
    with pytest.raises(RuntimeError):
        y.backward()


def test_detach_cuts_the_graph():
    x = leaf([1.0, 2.0])
    d = x.detach()
    assert not d.requires_grad and d.is_leaf
    np.testing.assert_array_equal(d.data, x.data)
    y = (d * x).sum()  # only the x factor carries a gradient: dy/dx = d
    y.backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0])
    with pytest.raises(RuntimeError):
        (d * 3).sum().backward()


def test_leaf_gradients_are_not_aliased():
    """Add passes the same g to both inputs; each leaf must own its .grad array."""
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()
    a.grad *= 2
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])
    np.testing.assert_array_equal(a.grad, [2.0, 2.0])


def test_leaf_gradient_is_not_the_callers_array():
    x = leaf([1.0, 2.0])
    g = np.array([5.0, 6.0])
    x.backward(g)  # a leaf as the root: its gradient is g itself, but not g's memory
    g[:] = 0
    np.testing.assert_array_equal(x.grad, [5.0, 6.0])


def test_leaf_gradient_is_a_writeable_array_even_for_0d_and_broadcast_grads():
    """sum's backward is a read-only broadcast view, and NumPy ufuncs turn 0-d arrays into
    scalars: .grad must still be an ndarray an optimizer (or an in-place all-reduce) can update."""
    x = leaf(np.zeros((2, 3)))
    x.sum().backward()
    x.grad += 1
    np.testing.assert_array_equal(x.grad, np.full((2, 3), 2.0))
    s = leaf(2.0)
    s.exp().backward()
    assert isinstance(s.grad, np.ndarray) and s.grad.shape == ()
    s.grad[...] = 0.0
    s.exp().backward()
    assert isinstance(s.grad, np.ndarray)
    np.testing.assert_allclose(s.grad, np.exp(2.0), rtol=1e-15)


def test_a_functions_backward_must_return_its_inputs_shape():
    class BadSum(Function):
        def forward(self, a):
            return a.sum()

        def backward(self, g):
            return (g,)  # shape () for an input of shape (3,)

    x = leaf([1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError, match="BadSum"):
        BadSum.apply(x).backward()


def test_a_custom_function_joins_the_graph():
    class Cube(Function):
        """z = a^3; dz/da = 3 a^2."""

        def forward(self, a):
            self.save_for_backward(a)
            return a ** 3

        def backward(self, g):
            (a,) = self.saved
            return (3 * a * a * g,)

    x = leaf([1.0, -2.0])
    (Cube.apply(x) * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [6.0, 24.0])


# ---------------------------------------------------------------- grad mode

def test_no_grad_builds_no_graph():
    x = leaf([1.0, 2.0])
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2 + 1
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf
    np.testing.assert_array_equal(y.data, [3.0, 5.0])


def test_no_grad_as_a_decorator():
    @no_grad()
    def evaluate(t):
        """Docstring kept."""
        assert not is_grad_enabled()
        return t * 2

    x = leaf([1.0])
    assert not evaluate(x).requires_grad
    assert is_grad_enabled()
    assert evaluate.__name__ == "evaluate" and evaluate.__doc__ == "Docstring kept."


def test_no_grad_as_a_bare_decorator():
    @no_grad
    def evaluate(t):
        return t * 2

    assert not evaluate(leaf([1.0])).requires_grad
    assert is_grad_enabled()


def test_enable_grad_inside_no_grad_and_restoring_on_exceptions():
    x = leaf([1.0, 2.0])
    with no_grad():
        with enable_grad():
            y = x * 3
        z = x * 3
        with pytest.raises(ZeroDivisionError):
            with enable_grad():
                1 / 0
        assert not is_grad_enabled()  # restored after the exception
        with no_grad():  # nesting the same mode is harmless
            pass
        assert not is_grad_enabled()
    assert is_grad_enabled()
    assert y.requires_grad and not z.requires_grad
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0])


def test_grad_mode_is_per_thread():
    """A thread inside no_grad() does not switch off the graph of another thread."""
    entered, release = threading.Event(), threading.Event()
    seen = {}

    def evaluator():
        with no_grad():
            entered.set()
            release.wait(5)
            seen["evaluator"] = is_grad_enabled()

    def fresh_thread():
        seen["fresh"] = is_grad_enabled()

    t = threading.Thread(target=evaluator)
    t.start()
    try:
        assert entered.wait(5)
        x = leaf([1.0])
        y = x * 2  # this thread is still in grad mode
        assert is_grad_enabled() and y.requires_grad
        with no_grad():  # and a new thread starts in grad mode whatever this one does
            other = threading.Thread(target=fresh_thread)
            other.start()
            other.join(5)
    finally:
        release.set()
        t.join(5)
    assert seen == {"evaluator": False, "fresh": True}


# ---------------------------------------------------------------- bad input: clear errors

@pytest.mark.parametrize("fn, op", [
    (lambda a, b: a + b, "add"),
    (lambda a, b: a - b, "sub"),
    (lambda a, b: a * b, "mul"),
    (lambda a, b: a / b, "div"),
], ids=["add", "sub", "mul", "div"])
def test_broadcast_mismatch_names_the_op_and_both_shapes(fn, op):
    a, b = leaf(np.ones((2, 3))), leaf(np.ones((4,)))
    with pytest.raises(ValueError, match=rf"{op}.*\(2, 3\).*\(4,\)"):
        fn(a, b)


def test_matmul_misaligned():
    with pytest.raises(ValueError, match=r"matmul.*\(2, 3\).*\(4, 5\)"):
        leaf(np.ones((2, 3))) @ leaf(np.ones((4, 5)))
    with pytest.raises(ValueError, match="matmul"):
        leaf(np.ones((2, 3, 4))) @ leaf(np.ones((3, 4, 5)))  # batch 2 vs 3
    with pytest.raises(ValueError, match="matmul"):
        leaf(np.ones(3)) @ leaf(np.ones(4))
    with pytest.raises(ValueError, match="matmul"):
        leaf(2.0) @ leaf(np.ones(3))


def test_reshape_to_an_incompatible_shape():
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        leaf(np.ones((2, 3))).reshape(4, 2)


@pytest.mark.parametrize("axes", [(0, 0, 1), (0, 1), (0, 1, 3), (0, 1, 2, 3)], ids=str)
def test_transpose_with_bad_axes(axes):
    with pytest.raises(ValueError, match="transpose"):
        leaf(np.ones((2, 3, 4))).transpose(axes)


def test_concat_mismatched():
    with pytest.raises(ValueError, match=r"concat.*\(2, 3\).*\(2, 4\)"):
        concat([leaf(np.ones((2, 3))), leaf(np.ones((2, 4)))], axis=0)
    with pytest.raises(ValueError, match="concat"):
        concat([leaf(np.ones((2, 3))), leaf(np.ones(3))])
    with pytest.raises(ValueError, match="concat"):
        concat([leaf(np.ones((2, 3)))], axis=2)
    with pytest.raises(ValueError):
        concat([])


@pytest.mark.parametrize("axis", [3, -4, (0, 0)], ids=str)
def test_reduction_with_bad_axis(axis):
    with pytest.raises(ValueError):
        leaf(np.ones((2, 3, 4))).sum(axis=axis)


def test_requires_grad_on_an_integer_tensor():
    with pytest.raises(RuntimeError, match="floating"):
        Tensor([1, 2, 3], requires_grad=True)


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1, 2]), "shapes"),            # 3 labels for 2 samples
    (np.array([[0], [1]]), "shapes"),           # labels must be 1-D
    (np.array([0.0, 1.0]), "integer"),          # float labels
    (np.array([0, 4]), r"\[0, 4\)"),            # class 4 of 4
    (np.array([-1, 0]), r"\[0, 4\)"),
])
def test_cross_entropy_bad_labels(labels, message):
    with pytest.raises(ValueError, match=message):
        F.cross_entropy(leaf(np.zeros((2, 4))), labels)


def test_cross_entropy_needs_2d_logits():
    with pytest.raises(ValueError, match="cross_entropy"):
        F.cross_entropy(leaf(np.zeros(4)), np.array([1]))


@pytest.mark.parametrize("p", [[-0.1, 0.5], [0.5, 1.5]])
def test_binary_cross_entropy_rejects_non_probabilities(p):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.binary_cross_entropy(leaf(p), np.array([0.0, 1.0]))


def test_losses_reject_mismatched_target_shapes():
    with pytest.raises(ValueError, match=r"mse_loss.*\(3,\).*\(3, 1\)"):
        F.mse_loss(leaf([1.0, 2.0, 3.0]), np.ones((3, 1)))
    with pytest.raises(ValueError, match="binary_cross_entropy"):
        F.binary_cross_entropy(leaf([0.5, 0.5]), np.ones(3))


@pytest.mark.parametrize("p", [-0.1, 1.1])
def test_dropout_rejects_p_outside_0_1(p):
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(leaf([1.0]), p)
