"""The engine's speed work that is not a kernel: the fused Linear op, leaf gradients kept
without a copy, the device check, and glibc's malloc thresholds. Each keeps the behaviour
of the slow path it replaces; these tests pin that down."""
import os
import subprocess
import sys

import numpy as np
import pytest

import engine.functional as F
from engine import Tensor, allocator, nn
from engine.accumulate_grad import accumulate_grad

rng = np.random.default_rng(0)


def test_linear_is_one_fused_op_with_the_primitive_gradients():
    x = rng.standard_normal((5, 4))
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    fused = [Tensor(a.copy(), requires_grad=True) for a in (x, w, b)]
    by_ops = [Tensor(a.copy(), requires_grad=True) for a in (x, w, b)]
    z = F.linear(*fused)
    z_ops = by_ops[0] @ by_ops[1].T + by_ops[2]
    assert type(z.grad_fn).__name__ == "Affine"
    np.testing.assert_allclose(z.data, z_ops.data, rtol=1e-14)
    G = Tensor(rng.standard_normal((5, 3)))
    (z * G).sum().backward()
    (z_ops * G).sum().backward()
    for a, b in zip(fused, by_ops):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-13)
    assert fused[1].grad.flags.c_contiguous   # laid out like the weight (see MatMul)


def test_linear_falls_back_to_primitives_outside_the_common_case():
    w = Tensor(rng.standard_normal((3, 4)))
    assert type(F.linear(Tensor(rng.standard_normal((2, 5, 4))), w).grad_fn).__name__ != "Affine"
    assert F.linear(Tensor(rng.standard_normal((2, 5, 4))), w).shape == (2, 5, 3)
    mixed = F.linear(Tensor(rng.standard_normal((2, 4)).astype(np.float32)), w)  # float32 x float64
    assert mixed.dtype == np.float64


def test_leaf_gradients_never_alias():
    """Add hands the same gradient array to both operands; each leaf still gets its own."""
    a, b = Tensor(np.ones(3), requires_grad=True), Tensor(np.ones(3), requires_grad=True)
    (a + b).sum().backward()
    assert not np.shares_memory(a.grad, b.grad)
    c = a * 2.0
    c.retain_grad()
    a.grad = None
    (c + b).sum().backward()
    assert not np.shares_memory(a.grad, c.grad) and a.grad.flags.writeable


def test_accumulate_grad_keeps_a_gradient_only_when_nothing_else_holds_it():
    from engine import accumulate_grad as module
    t = Tensor(np.zeros(3), requires_grad=True)
    g = np.ones(3)
    accumulate_grad(t, g)                      # held by this one variable: kept, not copied
    assert t.grad is g or module._OWNED is None
    accumulate_grad(t, np.ones(3))             # the second time: a sum, in a new array
    assert t.grad is not g and list(t.grad) == [2.0, 2.0, 2.0]
    u = Tensor(np.zeros(3), requires_grad=True)
    h = np.ones(3)
    alias = h
    accumulate_grad(u, h)                      # two names: copied
    assert u.grad is not h and not np.shares_memory(u.grad, alias)
    for shared in (h[1:], np.broadcast_to(h, (2, 3)), np.float64(1.0)):  # view, read-only, scalar
        w = Tensor(np.zeros(np.shape(shared)), requires_grad=True)
        accumulate_grad(w, shared)
        assert isinstance(w.grad, np.ndarray) and w.grad.flags.writeable
        assert not np.shares_memory(w.grad, h)


def test_a_user_gradient_is_copied_not_kept():
    x = Tensor(np.ones(3), requires_grad=True)
    grad = np.full(3, 2.0)
    (x * 1.0).backward(grad)
    assert not np.shares_memory(x.grad, grad)


def test_linear_layer_backward_twice_accumulates():
    layer = nn.Linear(4, 2, dtype=np.float64)
    x = Tensor(rng.standard_normal((3, 4)))
    layer(x).sum().backward()
    first = layer.weight.grad.copy()
    layer(x).sum().backward()
    np.testing.assert_allclose(layer.weight.grad, 2 * first)


def test_malloc_thresholds_are_set_on_glibc_unless_the_user_chose():
    assert allocator.keep_freed_memory_unless_told_otherwise({"MPIGRAD_KEEP_FREED_MEMORY": "0"}) is False
    assert allocator.keep_freed_memory_unless_told_otherwise({"MPIGRAD_KEEP_FREED_MEMORY": "false"}) is False
    assert allocator.keep_freed_memory_unless_told_otherwise({"MALLOC_TRIM_THRESHOLD_": "0"}) is False
    import platform
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert allocator.keep_freed_memory_unless_told_otherwise({}) is True
        both = {"MALLOC_TRIM_THRESHOLD_": "0", "MPIGRAD_KEEP_FREED_MEMORY": "1"}  # explicit: ours win
        assert allocator.keep_freed_memory_unless_told_otherwise(both) is True


def test_import_engine_does_not_print():
    out = subprocess.run([sys.executable, "-c", "import engine, engine.kernels"], capture_output=True,
                         text=True, env=dict(os.environ), check=True)
    assert out.stdout == ""


class _FakeCupyArray:
    """Looks like a CuPy array to backend.device_of (which checks the type's module)."""
    __module__ = "cupy._core.core"
    shape, dtype = (3,), np.dtype(np.float64)


def test_mixing_devices_raises_naming_both_devices():
    a, b = Tensor(np.ones(3)), Tensor(np.ones(3))
    b.data = _FakeCupyArray()
    with pytest.raises(ValueError, match=r"Add: tensors are on different devices: \['cpu', 'cuda'\]"):
        a + b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sgd_kernels_give_numpys_bits(dtype):
    """The in-place update kernels round like NumPy's expressions, so SGD's results (and every
    data-parallel test that compares them bit for bit) are unchanged."""
    from engine import kernels
    p, d = (rng.standard_normal((30, 7)).astype(dtype) for _ in range(2))
    expected = p.copy()
    expected -= 0.013 * d
    got = p.copy()
    kernels.sgd_update_(got, d, 0.013)
    np.testing.assert_array_equal(got, expected)
    expected, got = p.copy(), p.copy()
    expected *= 0.9
    expected += (1 - 0.1) * d
    kernels.momentum_update_(got, d, 0.9, 1 - 0.1)
    np.testing.assert_array_equal(got, expected)
    strided = p.copy()[:, ::2]                      # not contiguous: NumPy's own expression
    kernels.sgd_update_(strided, d[:, ::2], 0.5)
    np.testing.assert_array_equal(strided, p[:, ::2] - np.asarray(0.5, dtype) * d[:, ::2])
