"""The Tensor object: construction, dtype rules, conversions, devices and repr.

Run: python -m pytest tests/test_tensor.py -q
"""
import importlib.util

import numpy as np
import pytest

from engine import Tensor

HAS_CUPY = importlib.util.find_spec("cupy") is not None


# ---------------------------------------------------------------- construction and dtype rules

@pytest.mark.parametrize("data, dtype", [
    (1.5, np.float32),                           # Python floats: float32, as in PyTorch
    ([1.0, 2.5], np.float32),
    ([[1, 2.5], [3, 4]], np.float32),            # mixed int/float lists are float data
    (np.array([1.0, 2.0]), np.float64),          # arrays keep their dtype
    (np.array([1.0, 2.0], dtype=np.float32), np.float32),
    (np.array(3.0), np.float64),                 # a 0-d float64 array too
    (3, np.int64),                               # Python ints: int64 (class labels)
    ([0, 1, 2], np.int64),
    (np.array([1, 2], dtype=np.int32), np.int32),
    ([True, False], np.bool_),
])
def test_default_dtypes(data, dtype):
    t = Tensor(data)
    assert t.dtype == dtype
    np.testing.assert_array_equal(t.data, np.asarray(data))
    assert isinstance(t.data, np.ndarray)


@pytest.mark.parametrize("data", [1, [1.5, 2.0], np.array([1, 2]),
                                  np.array([0.5], dtype=np.float32)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, "float64"])
def test_explicit_dtype_wins(data, dtype):
    t = Tensor(data, dtype=dtype)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.data, np.asarray(data, dtype=dtype))


def test_properties():
    t = Tensor(np.zeros((2, 3, 4)))
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.numel() == 24 and len(t) == 2
    assert t.device == "cpu" and t.is_leaf and not t.requires_grad and t.grad is None
    s = Tensor(2.0)
    assert s.shape == () and s.ndim == 0


def test_tensor_from_a_tensor_takes_its_data_not_its_graph():
    x = Tensor([1.0, 2.0], requires_grad=True)
    y = Tensor(x * 2)
    assert not y.requires_grad and y.is_leaf
    np.testing.assert_array_equal(y.data, [2.0, 4.0])


def test_float_tensors_may_require_grad_int_tensors_may_not():
    assert Tensor([1.0], requires_grad=True).requires_grad
    assert Tensor([1], dtype=np.float64, requires_grad=True).requires_grad
    with pytest.raises(RuntimeError):
        Tensor(np.array([1, 2]), requires_grad=True)
    with pytest.raises(RuntimeError):
        Tensor(True, requires_grad=True)


# ---------------------------------------------------------------- operands that are not tensors

@pytest.mark.parametrize("fn, expected", [
    (lambda t: t * 2.0, [2.0, 4.0]),
    (lambda t: 2.0 * t, [2.0, 4.0]),
    (lambda t: t + 1, [2.0, 3.0]),
    (lambda t: 1 - t, [0.0, -1.0]),
    (lambda t: t / 4.0, [0.25, 0.5]),
    (lambda t: 1.0 / t, [1.0, 0.5]),
    (lambda t: t ** 2, [1.0, 4.0]),
    (lambda t: t ** 0.5, [1.0, 2.0 ** 0.5]),
    (lambda t: t.mean(), 1.5),
    (lambda t: t * np.float64(3.0), [3.0, 6.0]),
    (lambda t: np.float64(3.0) * t, [3.0, 6.0]),
    (lambda t: t + np.array([0.5, 0.5]), [1.5, 2.5]),     # a float64 array is a constant
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_python_and_numpy_scalars_do_not_promote(fn, expected, dtype):
    """float32 * 2.0 stays float32 (PyTorch's rule: a scalar does not set the dtype)."""
    t = Tensor(np.array([1.0, 2.0], dtype=dtype))
    out = fn(t)
    assert isinstance(out, Tensor) and out.dtype == dtype
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)


@pytest.mark.parametrize("fn, expected", [
    (lambda t: t * 0.5, [0.5, 1.0, 1.5]),
    (lambda t: t / 2, [0.5, 1.0, 1.5]),
    (lambda t: t.mean(), 2.0),
    (lambda t: t + 0.25, [1.25, 2.25, 3.25]),
])
def test_integer_tensors_meeting_floats_become_float(fn, expected):
    """An int tensor times 0.5 must not truncate 0.5 to 0."""
    out = fn(Tensor([1, 2, 3]))
    assert out.dtype.kind == "f"
    np.testing.assert_allclose(out.data, expected)


def test_integer_tensor_arithmetic_stays_integer():
    out = Tensor([1, 2, 3]) * 2 + 1
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out.data, [3, 5, 7])


@pytest.mark.parametrize("fn, expected", [
    (lambda a, t: a * t, [2.0, 4.0, 6.0]),
    (lambda a, t: a + t, [3.0, 4.0, 5.0]),
    (lambda a, t: a - t, [1.0, 0.0, -1.0]),
    (lambda a, t: a / t, [2.0, 1.0, 2.0 / 3.0]),
    (lambda a, t: a @ t, 12.0),
], ids=["mul", "add", "sub", "div", "matmul"])
def test_numpy_array_on_the_left_returns_a_tensor(fn, expected):
    t = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = fn(np.full(3, 2.0), t)
    assert isinstance(out, Tensor) and out.requires_grad and out.dtype == np.float32
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)


def test_numpy_array_on_the_left_passes_the_gradient():
    t = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    (np.array([1.0, 10.0, 100.0]) * t).sum().backward()
    np.testing.assert_array_equal(t.grad, [1.0, 10.0, 100.0])


def test_tensor_exponent_is_rejected():
    with pytest.raises(TypeError):
        Tensor([1.0]) ** Tensor([2.0])


# ---------------------------------------------------------------- conversions

def test_item():
    assert Tensor(2.5).item() == 2.5 and isinstance(Tensor(2.5).item(), float)
    assert Tensor([[7]]).item() == 7 and isinstance(Tensor([[7]]).item(), int)
    assert Tensor(3.0, requires_grad=True).item() == 3.0  # no graph needed for a number
    with pytest.raises(ValueError):
        Tensor([1.0, 2.0]).item()


def test_numpy():
    a = np.array([1.0, 2.0])
    out = Tensor(a).numpy()
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, a)
    x = Tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()
    np.testing.assert_array_equal(x.detach().numpy(), [1.0, 2.0])


def test_to_dtype_is_differentiable():
    x = Tensor([1.0, -2.0], requires_grad=True)  # float32
    y = x.to(dtype=np.float64)
    assert y.dtype == np.float64 and y.requires_grad
    (y * y * np.float64(1.5)).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3.0, -6.0])  # 3x


def test_to_with_nothing_to_change_returns_the_tensor():
    x = Tensor([1.0], requires_grad=True)
    assert x.to(dtype=np.float32) is x
    assert x.to(device="cpu") is x
    assert x.to() is x


def test_to_float32_rounds():
    y = Tensor(np.array([1 / 3]), dtype=np.float64).to(dtype="float32")
    assert y.dtype == np.float32 and y.item() == float(np.float32(1 / 3))


# ---------------------------------------------------------------- devices

def test_unknown_device_is_a_value_error():
    with pytest.raises(ValueError, match="tpu"):
        Tensor([1.0], device="tpu")
    with pytest.raises(ValueError, match="tpu"):
        Tensor([1.0]).to(device="tpu")


@pytest.mark.skipif(HAS_CUPY, reason="CuPy is installed: device='cuda' may work here")
def test_cuda_without_cupy_says_how_to_install_it():
    with pytest.raises(RuntimeError, match="CuPy.*pip install"):
        Tensor([1.0], device="cuda")
    with pytest.raises(RuntimeError, match="pip install"):
        Tensor(np.ones(2)).to(device="cuda")


# ---------------------------------------------------------------- repr

def test_repr_shows_values_and_grad_flag():
    r = repr(Tensor([1.0, 2.5], requires_grad=True))
    assert r.startswith("Tensor(") and "1." in r and "2.5" in r and "requires_grad=True" in r
    assert "float32" in r
    r = repr(Tensor(np.array([3, 4])))
    assert "3" in r and "4" in r and "requires_grad" not in r and "cuda" not in r


# ---------------------------------------------------------------- PyTorch behaviours added after review

def test_numpy_scalars_keep_their_dtype():
    assert Tensor(np.float64(1.0)).dtype == np.float64
    assert Tensor(np.float32(1.0)).dtype == np.float32


@pytest.mark.parametrize("op, expected", [
    ("__eq__", [False, True, False]), ("__ne__", [True, False, True]),
    ("__lt__", [True, False, False]), ("__le__", [True, True, False]),
    ("__gt__", [False, False, True]), ("__ge__", [False, True, True]),
])
def test_comparisons_give_boolean_tensors_without_grad(op, expected):
    a = Tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = getattr(a, op)(Tensor([2.0, 2.0, 2.0]))
    assert isinstance(out, Tensor) and not out.requires_grad
    assert out.dtype == np.bool_ and out.numpy().tolist() == expected
    assert getattr(a, op)(2.0).numpy().tolist() == expected  # a Python number works too


def test_accuracy_by_comparison_counts_matches():
    predictions, labels = Tensor([0, 1, 2, 2]), Tensor([0, 1, 1, 2])
    assert (predictions == labels).numpy().mean() == 0.75


def test_tensors_stay_hashable_by_identity():
    a, b = Tensor([1.0]), Tensor([1.0])
    assert len({a, b}) == 2 and {a: 1}[a] == 1


def test_cast_to_integer_cuts_the_graph():
    x = Tensor([1.7, 2.2], requires_grad=True)
    i = x.to(dtype="int64")
    assert i.dtype == np.int64 and not i.requires_grad
    assert i.numpy().tolist() == [1, 2]


def test_requires_grad_keeps_an_existing_grad():
    x = Tensor([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    x.requires_grad_(False)
    assert not x.requires_grad and x.grad.tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError, match="floating-point"):
        Tensor([1, 2]).requires_grad_()


@pytest.mark.parametrize("axis", [0, -1, (0,), None])
def test_zero_dim_tensors_accept_axis_0_and_minus_1(axis):
    x = Tensor(np.array(2.5), requires_grad=True)
    assert x.sum(axis=axis).item() == 2.5 and x.max(axis=axis).item() == 2.5
    x.mean(axis=axis).backward()
    assert x.grad.item() == 1.0
    with pytest.raises(ValueError, match="out of range"):
        x.sum(axis=1)


def test_one_d_matmul_error_names_the_shapes_given():
    with pytest.raises(ValueError, match=r"matmul: shapes \(3,\) and \(4,\)"):
        Tensor(np.ones(3)) @ Tensor(np.ones(4))


def test_flatten_start_axis_out_of_range():
    with pytest.raises(ValueError, match="flatten"):
        Tensor(np.ones(3)).flatten(1)


@pytest.mark.parametrize("data, expected", [([5.0], True), ([0.0], False), (2.0, True)])
def test_one_element_tensors_have_a_truth_value(data, expected):
    assert bool(Tensor(data)) is expected
    assert bool(Tensor(data) < 0) is False


def test_truth_of_a_many_element_tensor_is_ambiguous():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(Tensor([1.0, 2.0]) < 0)


@pytest.mark.parametrize("exponent, expected", [(0.5, [2.0, 3.0]), (-1, [0.25, 1 / 9])])
def test_integer_tensor_to_a_fractional_or_negative_power_becomes_float(exponent, expected):
    out = Tensor([4, 9]) ** exponent
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)
    assert (Tensor([2, 3]) ** 2).dtype == np.int64          # a whole power stays integer
    np.testing.assert_allclose((1 / Tensor([2, 4])).numpy(), [0.5, 0.25])


def test_max_of_a_row_with_nan_sends_the_gradient_to_the_nan():
    x = Tensor([[1.0, np.nan, 3.0]], requires_grad=True)
    x.max(axis=1).sum().backward()
    assert np.isnan(x.max().item())
    np.testing.assert_array_equal(x.grad, [[0.0, 1.0, 0.0]])
