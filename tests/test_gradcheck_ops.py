"""Every op's forward against NumPy and its backward against finite differences.

Each test builds float64 leaves, compares the forward value with the same
computation written in plain NumPy, and runs ``engine.gradcheck`` (central
differences, error O(eps^2)) on the backward: the chain rule (MATH F6) is
checked op by op, with broadcasting, axes and keepdims. Where finite
differences are not defined (max at a tie, relu at 0, the clamped ends of
binary cross-entropy) the documented gradient is written out by hand.

Run: python -m pytest tests/test_gradcheck_ops.py -q
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import engine.functional as F
from engine import Tensor, concat, gradcheck, stack

FEW = settings(max_examples=25, deadline=None)


def leaf(array):
    """A float64 leaf that requires grad (a copy, so the test's array stays untouched)."""
    return Tensor(np.array(array, dtype=np.float64), requires_grad=True)


def uniform(rng, shape, low=-1.0, high=1.0):
    return rng.uniform(low, high, size=shape)


def away_from_zero(rng, shape, low=0.2, high=1.5):
    """Random signs, magnitudes in [low, high]: safe for division and relu's kink."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, high, size=shape)


def distinct(rng, shape):
    """Entries at least 0.3 apart (no ties), for max: finite differences are exact there."""
    n = int(np.prod(shape))
    return (rng.permutation(n) * 0.3 + rng.uniform(0, 0.05, size=n)).reshape(shape) - n * 0.15


TIGHT = dict(atol=1e-7, rtol=1e-6)  # float64 central differences are good to ~1e-9 here


def check(fn, np_fn, *arrays, **gradcheck_options):
    """fn(*tensors) equals np_fn(*arrays), and its gradients pass gradcheck.

    The tolerances are tighter than gradcheck's defaults, so that a gradient off by
    a factor 1.0001 is caught too (for the inputs used here, of size about 1).
    """
    gradcheck_options = {**TIGHT, **gradcheck_options}
    tensors = [leaf(a) for a in arrays]
    out = fn(*tensors)
    assert isinstance(out, Tensor)
    expected = np_fn(*[np.array(a, dtype=np.float64) for a in arrays])
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    assert gradcheck(fn, tensors, **gradcheck_options)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# ---------------------------------------------------------------- gradcheck itself

def test_gradcheck_catches_a_wrong_gradient():
    """The checker can fail: an op whose backward is off by a factor 2 is rejected."""
    from engine.autograd import Function

    class WrongSquare(Function):
        def forward(self, a):
            self.save_for_backward(a)
            return a * a

        def backward(self, g):
            (a,) = self.saved
            return (g * a,)  # should be 2 a g

    x = leaf([0.5, -1.0, 2.0])
    with pytest.raises(AssertionError, match="gradcheck"):
        gradcheck(lambda t: WrongSquare.apply(t), [x])


def test_gradcheck_on_a_non_contiguous_input(rng):
    """A leaf whose array is a transposed view: the perturbation must reach the input."""
    base = uniform(rng, (3, 4))
    x = Tensor(base.T, requires_grad=True)  # shares memory, not C-contiguous
    assert not x.data.flags.c_contiguous
    assert gradcheck(lambda t: t * t, [x])
    np.testing.assert_array_equal(x.data, base.T)  # restored after the check


# ---------------------------------------------------------------- binary elementwise + broadcasting

BINARY = {
    "add": (lambda a, b: a + b, np.add),
    "sub": (lambda a, b: a - b, np.subtract),
    "mul": (lambda a, b: a * b, np.multiply),
    "div": (lambda a, b: a / b, np.divide),
}
SHAPE_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 1), (4,)),        # both operands stretched
    ((2, 3, 4), (4,)),     # a leading axis added to b
    ((4,), (2, 3, 4)),
    ((2, 1, 4), (3, 1)),
    ((), (2, 3)),          # 0-d tensor operands
    ((2, 3), ()),
    ((), ()),
]


@pytest.mark.parametrize("op", list(BINARY))
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_binary_ops_broadcast(op, shapes, rng):
    fn, np_fn = BINARY[op]
    a, b = away_from_zero(rng, shapes[0]), away_from_zero(rng, shapes[1])
    check(fn, np_fn, a, b)


@FEW
@given(shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       op=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2**32 - 1))
def test_binary_ops_random_broadcastable_shapes(shapes, op, seed):
    rng = np.random.default_rng(seed)
    fn, np_fn = BINARY[op]
    a, b = (away_from_zero(rng, s) for s in shapes.input_shapes)
    check(fn, np_fn, a, b)


def test_broadcast_gradient_by_hand():
    """(3,1) + (4,): each a_i is used 4 times and each b_j 3 times; the sums are the grads."""
    a, b = leaf(np.zeros((3, 1))), leaf(np.zeros(4))
    w = np.arange(12.0).reshape(3, 4)
    ((a + b) * Tensor(w)).sum().backward()
    np.testing.assert_array_equal(a.grad, w.sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(b.grad, w.sum(axis=0))
    assert a.grad.shape == (3, 1) and b.grad.shape == (4,)


SCALAR_OPS = {
    "t+2": (lambda t: t + 2, lambda x: x + 2),
    "2+t": (lambda t: 2 + t, lambda x: 2 + x),
    "t-2.5": (lambda t: t - 2.5, lambda x: x - 2.5),
    "2.5-t": (lambda t: 2.5 - t, lambda x: 2.5 - x),
    "t*3": (lambda t: t * 3, lambda x: x * 3),
    "-1.5*t": (lambda t: -1.5 * t, lambda x: -1.5 * x),
    "t/4": (lambda t: t / 4, lambda x: x / 4),
    "3/t": (lambda t: 3 / t, lambda x: 3 / x),
    "-t": (lambda t: -t, lambda x: -x),
    "t**2": (lambda t: t ** 2, lambda x: x ** 2),
    "t**3": (lambda t: t ** 3, lambda x: x ** 3),
    "t**-1": (lambda t: t ** -1, lambda x: x ** -1.0),
}


@pytest.mark.parametrize("name", list(SCALAR_OPS))
@pytest.mark.parametrize("shape", [(), (2, 3)], ids=str)
def test_scalar_operands_on_both_sides(name, shape, rng):
    fn, np_fn = SCALAR_OPS[name]
    check(fn, np_fn, away_from_zero(rng, shape))


@pytest.mark.parametrize("exponent", [0.5, -1.5, 2.5, 1])
def test_pow_fractional_exponents_on_positive_base(exponent, rng):
    check(lambda t: t ** exponent, lambda x: x ** exponent, uniform(rng, (2, 3), 0.3, 2.0))


def test_pow_zero_exponent_has_zero_gradient_even_at_zero():
    """d/dx x^0 = 0 everywhere (the formula p x^(p-1) gives 0 * inf = nan at x = 0)."""
    x = leaf([0.0, 2.0, -3.0])
    y = x ** 0
    np.testing.assert_array_equal(y.data, [1.0, 1.0, 1.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0])


def test_numpy_array_operands(rng):
    """A NumPy array on either side is a constant: the gradient reaches only the tensor."""
    c = away_from_zero(rng, (3, 4))
    check(lambda t: c * t + t / c - c, lambda x: c * x + x / c - c, away_from_zero(rng, (4,)))
    check(lambda t: c - t, lambda x: c - x, away_from_zero(rng, (3, 1)))


# ---------------------------------------------------------------- unary elementwise

UNARY = {
    "exp": (lambda t: t.exp(), np.exp, (-2.0, 2.0)),
    "log": (lambda t: t.log(), np.log, (0.2, 3.0)),
    "tanh": (lambda t: t.tanh(), np.tanh, (-2.0, 2.0)),
    "sigmoid": (lambda t: t.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), (-4.0, 4.0)),
    "F.sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), (-4.0, 4.0)),
    "F.tanh": (F.tanh, np.tanh, (-2.0, 2.0)),
}


@pytest.mark.parametrize("name", list(UNARY))
@pytest.mark.parametrize("shape", [(), (5,), (2, 3)], ids=str)
def test_unary_ops(name, shape, rng):
    fn, np_fn, (low, high) = UNARY[name]
    check(fn, np_fn, uniform(rng, shape, low, high))


@pytest.mark.parametrize("fn", [lambda t: t.relu(), F.relu], ids=["relu", "F.relu"])
def test_relu(fn, rng):
    check(fn, lambda x: np.maximum(x, 0), away_from_zero(rng, (3, 4)))


def test_relu_gradient_at_zero_is_zero():
    """The kink: the documented choice (as PyTorch) is dz/da = 0 at a = 0."""
    x = leaf([-1.0, 0.0, 2.0])
    x.relu().sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


def test_sigmoid_extreme_inputs_do_not_overflow():
    x = leaf([-1000.0, -50.0, 0.0, 50.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in exp would be a RuntimeWarning
        y = x.sigmoid()
        y.backward(np.ones(5))
    expected = np.array([0.0, np.exp(-50.0) / (1 + np.exp(-50.0)), 0.5,
                         1 / (1 + np.exp(-50.0)), 1.0])
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=0)
    np.testing.assert_allclose(x.grad, expected * (1 - expected), rtol=1e-10, atol=0)
    assert np.isfinite(x.grad).all()


# ---------------------------------------------------------------- reductions

AXES = [None, 0, 1, -1, (0, 2), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
def test_reductions(reduction, axis, keepdims, rng):
    x = distinct(rng, (2, 3, 4))
    check(lambda t: getattr(t, reduction)(axis=axis, keepdims=keepdims),
          lambda a: getattr(a, reduction)(axis=axis, keepdims=keepdims), x)


@FEW
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3),
       data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_reductions_random_shapes_and_axes(shape, data, seed):
    ndim = len(shape)
    axis = tuple(data.draw(st.lists(st.integers(-ndim, ndim - 1), unique_by=lambda a: a % ndim,
                                    max_size=ndim), label="axis")) or None
    keepdims = data.draw(st.booleans(), label="keepdims")
    reduction = data.draw(st.sampled_from(["sum", "mean", "max"]), label="reduction")
    x = distinct(np.random.default_rng(seed), tuple(shape))
    check(lambda t: getattr(t, reduction)(axis=axis, keepdims=keepdims),
          lambda a: getattr(a, reduction)(axis=axis, keepdims=keepdims), x)


@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
def test_reductions_of_0d_tensors(reduction):
    x = leaf(3.0)
    y = getattr(x, reduction)()
    assert y.shape == () and y.item() == 3.0
    y.backward()
    np.testing.assert_array_equal(x.grad, 1.0)


def test_max_ties_split_the_gradient_evenly():
    """Finite differences are undefined at a tie; the documented rule is 1/k to each of k maxima."""
    x = leaf([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    w = np.array([10.0, 6.0])
    (x.max(axis=1) * Tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad, [[0.0, 5.0, 5.0], [2.0, 2.0, 2.0]], rtol=1e-15)

    x.grad = None
    x.max().backward()  # global max 3 appears twice
    np.testing.assert_allclose(x.grad, [[0.0, 0.5, 0.5], [0.0, 0.0, 0.0]], rtol=1e-15)

    x.grad = None
    x.max(axis=0, keepdims=True).sum().backward()  # column 0 unique, 1 and 2 unique: 3 > 2
    np.testing.assert_allclose(x.grad, [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], rtol=1e-15)


def test_mean_gradient_by_hand():
    x = leaf(np.zeros((2, 5)))
    x.mean(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 5), 0.2), rtol=1e-15)


# ---------------------------------------------------------------- shape ops

@pytest.mark.parametrize("fn, np_fn", [
    (lambda t: t.reshape(4, 6), lambda a: a.reshape(4, 6)),
    (lambda t: t.reshape((3, -1)), lambda a: a.reshape(3, -1)),
    (lambda t: t.reshape(-1), lambda a: a.reshape(-1)),
    (lambda t: t.flatten(1), lambda a: a.reshape(2, -1)),
    (lambda t: t.transpose(), lambda a: a.transpose()),
    (lambda t: t.T, lambda a: a.T),
    (lambda t: t.transpose(1, 0, 2), lambda a: a.transpose(1, 0, 2)),
    (lambda t: t.transpose((2, 0, 1)), lambda a: a.transpose(2, 0, 1)),
    (lambda t: t.transpose(-1, 0, -2), lambda a: a.transpose(2, 0, 1)),
], ids=["reshape", "reshape-1", "ravel", "flatten", "transpose", "T", "axes", "tuple", "negative"])
def test_shape_ops(fn, np_fn, rng):
    check(fn, np_fn, uniform(rng, (2, 3, 4)))


def test_transpose_gradient_moves_back_by_the_inverse_permutation(rng):
    """A non-involutive permutation: g must go back with argsort(axes), not with axes."""
    x = leaf(np.zeros((2, 3, 4)))
    w = uniform(rng, (4, 2, 3))
    (x.transpose(2, 0, 1) * Tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad, w.transpose(1, 2, 0))


INDICES = {
    "int": 1,
    "negative int": -1,
    "tuple of ints": (1, 2),
    "slice": slice(1, 4),
    "step slice": slice(0, 5, 2),
    "negative step": slice(None, None, -2),
    "2-D slices": (slice(None, None, 2), slice(3, 0, -1)),
    "ellipsis": (Ellipsis, 0),
    "newaxis": (None, slice(None), 1),
    "int array": [2, 0],
    "int array with repeats": [1, 1, 3, 1],
    "two int arrays": ([0, 2, 2], [1, 1, 4]),
    "array and slice": ([3, 0, 3], slice(1, None, 2)),
    "2-D int array": np.array([[0, 1], [1, 1]]),
    "boolean mask rows": np.array([True, False, True, True]),
    "boolean mask all": "mask",
}


@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(name, rng):
    x = uniform(rng, (4, 5))
    index = INDICES[name]
    if isinstance(index, str):
        index = x > 0  # a full boolean mask
    np_index = tuple(np.asarray(i) if isinstance(i, list) else i for i in index) \
        if isinstance(index, tuple) else (np.asarray(index) if isinstance(index, list) else index)
    check(lambda t: t[index], lambda a: a[np_index], x)


def test_getitem_repeated_indices_accumulate():
    """x[[1, 1, 3, 1]]: entry 1 is picked three times, so it gets three gradients."""
    x = leaf(np.zeros(5))
    w = np.array([1.0, 10.0, 100.0, 1000.0])
    (x[[1, 1, 3, 1]] * Tensor(w)).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1011.0, 0.0, 100.0, 0.0])


def test_getitem_with_a_tensor_index():
    x = leaf([10.0, 20.0, 30.0])
    idx = Tensor(np.array([2, 2, 0]))
    y = x[idx]
    np.testing.assert_array_equal(y.data, [30.0, 30.0, 10.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 2.0])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis, rng):
    shapes = {0: [(1, 3), (2, 3), (3, 3)], 1: [(2, 1), (2, 4), (2, 2)],
              -1: [(2, 1), (2, 4), (2, 2)]}[axis]
    arrays = [uniform(rng, s) for s in shapes]
    check(lambda *ts: concat(ts, axis=axis), lambda *a: np.concatenate(a, axis=axis), *arrays)


def test_concat_with_a_constant_and_mixed_grad(rng):
    a, c = leaf(uniform(rng, (2, 2))), Tensor(uniform(rng, (2, 3)))
    out = concat([c, a], axis=1)
    np.testing.assert_array_equal(out.data, np.concatenate([c.data, a.data], axis=1))
    (out * Tensor(np.arange(10.0).reshape(2, 5))).sum().backward()
    np.testing.assert_array_equal(a.grad, [[3.0, 4.0], [8.0, 9.0]])
    assert c.grad is None


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
def test_stack(axis, rng):
    arrays = [uniform(rng, (2, 3)) for _ in range(3)]
    check(lambda *ts: stack(ts, axis=axis), lambda *a: np.stack(a, axis=axis), *arrays)


def test_stack_of_0d_tensors():
    check(lambda a, b: stack([a, b]), lambda a, b: np.stack([a, b]), 1.5, -2.0)


# ---------------------------------------------------------------- matmul

MATMUL_SHAPES = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),      # batched
    ((2, 1, 3, 4), (5, 4, 2)),   # batch axes broadcast: (2,1) with (5,) -> (2,5)
    ((3, 4), (2, 4, 5)),         # a 2-D operand used by every batch
    ((2, 3, 4), (4, 5)),
    ((4,), (4, 5)),              # 1-D rules: a row ...
    ((3, 4), (4,)),              # ... a column ...
    ((4,), (4,)),                # ... a dot product (0-d result)
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul(shapes, rng):
    a, b = uniform(rng, shapes[0]), uniform(rng, shapes[1])
    check(lambda x, y: x @ y, np.matmul, a, b)


def test_matmul_with_numpy_operands(rng):
    w = uniform(rng, (4, 2))
    check(lambda t: t @ w, lambda a: a @ w, uniform(rng, (3, 4)))
    check(lambda t: w.T @ t, lambda a: w.T @ a, uniform(rng, (4, 3)))


def test_matmul_with_column_major_operands(rng):
    """Leaves whose arrays are transposed views (as W.T in x @ W.T): same values, same grads."""
    a, b = uniform(rng, (4, 3)), uniform(rng, (5, 4))
    x, y = Tensor(a.T, requires_grad=True), Tensor(b.T, requires_grad=True)  # (3,4) @ (4,5)
    assert x.data.flags.f_contiguous and not x.data.flags.c_contiguous
    out = x @ y
    np.testing.assert_allclose(out.data, a.T @ b.T, rtol=1e-12)
    assert gradcheck(lambda s, t: s @ t, [x, y], **TIGHT)
    w = uniform(rng, (3, 5))
    x.grad = y.grad = None
    (x @ y * Tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad, w @ b, rtol=1e-12)      # G B^T
    np.testing.assert_allclose(y.grad, a @ w, rtol=1e-12)      # A^T G


def test_matmul_gradient_is_the_outer_product():
    """MATH F6 for z = W x: dL/dW = g x^T, dL/dx = W^T g."""
    W, x = leaf([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), leaf([7.0, 8.0])
    g = np.array([1.0, -1.0, 2.0])
    (W @ x).backward(g)
    np.testing.assert_array_equal(W.grad, np.outer(g, [7.0, 8.0]))
    np.testing.assert_array_equal(x.grad, np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]).T @ g)


def test_linear(rng):
    x, W, b = uniform(rng, (5, 3)), uniform(rng, (2, 3)), uniform(rng, (2,))
    check(lambda x, W, b: F.linear(x, W, b), lambda x, W, b: x @ W.T + b, x, W, b)
    check(lambda x, W: F.linear(x, W), lambda x, W: x @ W.T, x, W)


# ---------------------------------------------------------------- softmax family (MATH F3, F5)

def np_log_softmax(z, axis=-1):
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family(name, axis, rng):
    np_fn = {"softmax": lambda z: np.exp(np_log_softmax(z, axis)),
             "log_softmax": lambda z: np_log_softmax(z, axis)}[name]
    check(lambda t: getattr(F, name)(t, axis=axis), np_fn, uniform(rng, (3, 4), -3, 3))


def test_softmax_rows_sum_to_one_on_3d(rng):
    y = F.softmax(Tensor(uniform(rng, (2, 3, 4), -5, 5)), axis=1)
    np.testing.assert_allclose(y.data.sum(axis=1), np.ones((2, 4)), rtol=1e-6)


EXTREME = np.array([[1000.0, -1000.0, 0.0],
                    [-1000.0, -1000.0, -1000.0],
                    [1000.0, 1000.0, -1000.0]])


def test_softmax_and_log_softmax_on_extreme_values():
    """exp(1000) overflows; subtracting the row max first must give exact, finite values."""
    log3, log2 = np.log(3.0), np.log(2.0)
    expected_log = np.array([[0.0, -2000.0, -1000.0],
                             [-log3, -log3, -log3],
                             [-log2, -log2, -2000.0 - log2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        z = F.log_softmax(leaf(EXTREME))
        s = F.softmax(leaf(EXTREME))
    np.testing.assert_allclose(z.data, expected_log, rtol=1e-12)
    np.testing.assert_allclose(s.data, np.exp(expected_log), rtol=1e-12, atol=0)
    assert np.isfinite(z.data).all() and np.isfinite(s.data).all()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family_gradients_on_extreme_values(name, rng):
    """Hand gradients: log_softmax: w - p sum(w); softmax: p (w - sum(w p))."""
    x = leaf(EXTREME)
    w = uniform(rng, EXTREME.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (getattr(F, name)(x) * Tensor(w)).sum().backward()
    p = np.exp(np_log_softmax(EXTREME))
    if name == "log_softmax":
        expected = w - p * w.sum(axis=1, keepdims=True)
    else:
        expected = p * (w - (w * p).sum(axis=1, keepdims=True))
    assert np.isfinite(x.grad).all()
    np.testing.assert_allclose(x.grad, expected, rtol=1e-10, atol=1e-12)
    assert gradcheck(getattr(F, name), [leaf(EXTREME)])


def np_cross_entropy(z, labels):
    n = len(labels)
    return -np_log_softmax(z, axis=1)[np.arange(n), labels].mean()


def test_cross_entropy_against_numpy(rng):
    z = uniform(rng, (6, 4), -3, 3)
    labels = np.array([0, 3, 3, 1, 2, 0])
    check(lambda t: F.cross_entropy(t, labels), lambda a: np_cross_entropy(a, labels), z)
    # the closed form of the gradient: (softmax(z) - onehot(y)) / N
    x = leaf(z)
    F.cross_entropy(x, Tensor(labels)).backward()
    onehot = np.eye(4)[labels]
    np.testing.assert_allclose(x.grad, (np.exp(np_log_softmax(z)) - onehot) / 6, rtol=1e-12)


def test_cross_entropy_on_extreme_logits():
    labels = np.array([1, 0, 2])
    loss = F.cross_entropy(leaf(EXTREME), labels)
    # row 0: label 1 has log-prob -2000; row 1: -log 3; row 2: -2000 - log 2
    expected = (2000.0 + np.log(3.0) + 2000.0 + np.log(2.0)) / 3
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    assert gradcheck(lambda t: F.cross_entropy(t, labels), [leaf(EXTREME)])


# ---------------------------------------------------------------- MSE and BCE (MATH F4, F5)

def test_mse_loss(rng):
    yhat, y = uniform(rng, (4, 3)), uniform(rng, (4, 3))
    check(lambda a: F.mse_loss(a, y), lambda a: ((a - y) ** 2).mean(), yhat)
    check(lambda a, b: F.mse_loss(a, b), lambda a, b: ((a - b) ** 2).mean(), yhat, y)


def test_mse_loss_gradient_by_hand():
    yhat = leaf([1.0, 2.0, 4.0])
    F.mse_loss(yhat, Tensor(np.array([0.0, 2.0, 1.0]))).backward()
    np.testing.assert_allclose(yhat.grad, 2 * np.array([1.0, 0.0, 3.0]) / 3, rtol=1e-15)


def np_bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()


def test_binary_cross_entropy_against_the_formula(rng):
    p, y = uniform(rng, (3, 4), 0.05, 0.95), rng.integers(0, 2, size=(3, 4)).astype(np.float64)
    check(lambda t: F.binary_cross_entropy(t, y), lambda a: np_bce(a, y), p)
    soft = uniform(rng, (3, 4), 0.0, 1.0)  # soft targets are allowed too
    check(lambda t: F.binary_cross_entropy(t, soft), lambda a: np_bce(a, soft), p)
    x = leaf(p)
    F.binary_cross_entropy(x, Tensor(y)).backward()
    np.testing.assert_allclose(x.grad, (p - y) / (p * (1 - p)) / p.size, rtol=1e-12)


def test_binary_cross_entropy_of_a_sigmoid(rng):
    z, y = uniform(rng, (5,), -3, 3), np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    s = 1 / (1 + np.exp(-z))
    check(lambda t: F.binary_cross_entropy(t.sigmoid(), y), lambda a: np_bce(s, y), z)


@pytest.mark.filterwarnings("ignore:divide by zero encountered in log:RuntimeWarning")
def test_binary_cross_entropy_clamps_like_pytorch():
    """log is clamped at -100 (loss 100 per wrong certain answer, 0 per right one), and the
    gradient is (p - y) / max(p (1 - p), 1e-12) / n, as torch.nn.functional.binary_cross_entropy."""
    p = leaf([0.0, 1.0, 0.0, 1.0])
    y = np.array([0.0, 1.0, 1.0, 0.0])
    loss = F.binary_cross_entropy(p, y)
    assert loss.item() == 50.0  # (0 + 0 + 100 + 100) / 4
    loss.backward()
    np.testing.assert_allclose(p.grad, [0.0, 0.0, -1 / 1e-12 / 4, 1 / 1e-12 / 4], rtol=1e-12)


# ---------------------------------------------------------------- dropout

def test_dropout_gradient_is_the_mask_over_keep_probability(rng):
    p = 0.3
    x = leaf(away_from_zero(rng, (50, 40)))  # no zeros: the output shows the mask
    y = F.dropout(x, p, generator=np.random.default_rng(7))
    mask = y.data != 0
    assert 0.6 < mask.mean() < 0.8  # about 1 - p of 2000 entries are kept
    np.testing.assert_allclose(y.data, x.data * mask / (1 - p), rtol=1e-15)
    w = uniform(rng, (50, 40))
    (y * Tensor(w)).sum().backward()
    np.testing.assert_allclose(x.grad, w * mask / (1 - p), rtol=1e-15)
    # the same seed gives the same mask; finite differences see that fixed mask
    again = F.dropout(Tensor(x.data), p, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(again.data != 0, mask)
    small = leaf(away_from_zero(rng, (3, 4)))
    assert gradcheck(lambda t: F.dropout(t, p, generator=np.random.default_rng(3)), [small])


def test_dropout_uses_the_manual_seed(rng):
    from engine import manual_seed
    x = Tensor(np.ones((20, 20)))
    manual_seed(11)
    first = F.dropout(x, 0.5).data
    manual_seed(11)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, first)
    assert not np.array_equal(F.dropout(x, 0.5).data, first)  # the generator moved on
    assert set(np.unique(first)) <= {0.0, 2.0}


@pytest.mark.parametrize("p, training", [(0.5, False), (0.0, True), (0.0, False), (1.0, False)])
def test_dropout_identity_cases(p, training, rng):
    x = leaf(uniform(rng, (4, 5)))
    y = F.dropout(x, p, training=training)
    np.testing.assert_array_equal(y.data, x.data)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((4, 5)))


def test_dropout_p_one_drops_everything(rng):
    x = leaf(uniform(rng, (4, 5)))
    y = F.dropout(x, 1.0)
    np.testing.assert_array_equal(y.data, np.zeros((4, 5)))
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.zeros((4, 5)))


# ---------------------------------------------------------------- dtypes are kept

DTYPE_CASES = {
    "add-broadcast": (lambda a, b: a + b, [(3, 1), (4,)]),
    "sub-div": (lambda a, b: (a - b) / b, [(3, 4), (4,)]),
    "scalars": (lambda a: 2.0 * a - 1 + a / 3.0 + 0.5 ** 1 * a ** 2, [(3,)]),
    "unary": (lambda a: a.exp() + a.tanh() + a.sigmoid() + a.relu() + (a * a + 1).log(),
              [(3,)]),
    "reductions": (lambda a: a.sum(0) + a.mean(1) * 2 + a.max(axis=0), [(3, 3)]),
    "shape": (lambda a: concat([a.T, a[::2]], 0).reshape(-1)[[0, 0, 1]], [(2, 2)]),
    "stack": (lambda a, b: stack([a, b], 1), [(2, 3), (2, 3)]),
    "matmul-1d": (lambda a, b: a @ b, [(4,), (2, 4, 3)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(2, 3), (4, 3), (4,)]),
    "softmax": (lambda a: F.softmax(a) + F.log_softmax(a, axis=0), [(2, 3)]),
    "cross_entropy": (lambda a: F.cross_entropy(a, np.array([1, 0])), [(2, 3)]),
    "mse": (lambda a, b: F.mse_loss(a, b), [(2, 3), (2, 3)]),
    "bce": (lambda a: F.binary_cross_entropy(a.sigmoid(), np.array([0.0, 1.0])), [(2,)]),
    "dropout": (lambda a: F.dropout(a, 0.5, generator=np.random.default_rng(0)), [(4,)]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(DTYPE_CASES))
def test_outputs_and_gradients_keep_the_input_dtype(name, dtype, rng):
    fn, shapes = DTYPE_CASES[name]
    inputs = [Tensor(uniform(rng, s, 0.2, 1.0).astype(dtype), requires_grad=True) for s in shapes]
    out = fn(*inputs)
    assert out.dtype == dtype, f"{name}: output {out.dtype} from {np.dtype(dtype)} inputs"
    out.backward(np.ones(out.shape, dtype=dtype))
    for t in inputs:
        assert t.grad is not None and t.grad.dtype == dtype
        assert np.isfinite(t.grad).all()
