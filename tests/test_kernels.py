"""Every Numba kernel against its NumPy reference, the fused cross-entropy against the
op-by-op one and finite differences, the numba.cuda kernels under Numba's CUDA simulator,
and the on-disk compilation cache.

Kernel compilation is the slow part of this file (about a second per kernel and dtype on a
cold cache, nothing on a warm one): the cases reuse few argument types on purpose.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import engine.functional as F
from engine import Tensor, gradcheck, kernels
from engine.kernels import cpu, reference

ROOT = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}
WINDOWS = [((2, 3, 7, 6), 3, 3, 1, 1), ((2, 2, 9, 9), 3, 2, 2, 0), ((1, 2, 5, 5), 5, 5, 1, 2),
           ((2, 1, 8, 7), 2, 3, 3, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kh, kw, stride, padding", WINDOWS)
def test_im2col_and_col2im_match_the_reference(dtype, shape, kh, kw, stride, padding):
    x = rng.standard_normal(shape).astype(dtype)
    cols = cpu.im2col(x, kh, kw, stride, padding)
    np.testing.assert_array_equal(cols, reference.im2col(x, kh, kw, stride, padding))
    g = rng.standard_normal(cols.shape).astype(dtype)
    np.testing.assert_allclose(kernels.col2im(g, shape, kh, kw, stride, padding),
                               reference.col2im(g, shape, kh, kw, stride, padding), **TOL[dtype])


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> = <x, col2im(c)> for all x, c: why col2im gives the gradient."""
    x, shape = rng.standard_normal((2, 3, 7, 6)), (2, 3, 7, 6)
    cols = kernels.im2col(x, 3, 3, 2, 1)
    c = rng.standard_normal(cols.shape)
    assert np.isclose((cols * c).sum(), (x * kernels.col2im(c, shape, 3, 3, 2, 1)).sum(), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, kh, kw, stride, padding",
                         WINDOWS[:3] + [((2, 3, 8, 8), 2, 2, 2, 0), ((2, 2, 7, 9), 2, 2, 2, 0)])
def test_pooling_kernels_match_the_reference(dtype, shape, kh, kw, stride, padding):
    if 2 * padding > min(kh, kw):
        padding = 0
    x = rng.standard_normal(shape).astype(dtype)
    out, argmax = kernels.max_pool_forward(x, kh, kw, stride, padding)
    ref_out, ref_argmax = reference.max_pool_forward(x, kh, kw, stride, padding)
    np.testing.assert_array_equal(out, ref_out)
    np.testing.assert_array_equal(argmax, ref_argmax)
    g = rng.standard_normal(out.shape).astype(dtype)
    np.testing.assert_allclose(kernels.max_pool_backward(g, argmax, shape),
                               reference.max_pool_backward(g, argmax, shape), **TOL[dtype])
    np.testing.assert_allclose(kernels.avg_pool_forward(x, kh, kw, stride, padding),
                               reference.avg_pool_forward(x, kh, kw, stride, padding), **TOL[dtype])
    np.testing.assert_allclose(kernels.avg_pool_backward(g, shape, kh, kw, stride, padding),
                               reference.avg_pool_backward(g, shape, kh, kw, stride, padding), **TOL[dtype])


# ---------------------------------------------------------------- fused softmax cross-entropy

@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_kernels_match_the_reference(dtype):
    logits = (rng.standard_normal((7, 5)) * 3).astype(dtype)
    labels = rng.integers(0, 5, 7)
    loss, probs = kernels.cross_entropy_forward(logits, labels)
    ref_loss, ref_probs = reference.cross_entropy_forward(logits, labels)
    assert loss.dtype == dtype and loss.shape == ()
    np.testing.assert_allclose(loss, ref_loss, **TOL[dtype])
    np.testing.assert_allclose(probs, ref_probs, **TOL[dtype])
    np.testing.assert_allclose(kernels.cross_entropy_backward(probs, labels, 0.25),
                               reference.cross_entropy_backward(probs, labels, 0.25), **TOL[dtype])


def test_fused_cross_entropy_equals_log_softmax_then_pick():
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    a, b = Tensor(logits, requires_grad=True), Tensor(logits.copy(), requires_grad=True)
    fused = F.cross_entropy(a, labels)
    by_ops = -F.log_softmax(b, axis=1)[np.arange(6), labels].mean()
    assert type(fused.grad_fn).__name__ == "CrossEntropy"
    np.testing.assert_allclose(fused.data, by_ops.data, rtol=1e-12)
    (fused * 3.0).backward()
    (by_ops * 3.0).backward()
    np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, atol=1e-15)


def test_fused_cross_entropy_matches_finite_differences():
    logits = Tensor(rng.standard_normal((5, 3)), requires_grad=True)
    labels = Tensor(np.array([0, 2, 1, 2, 0], dtype=np.int32))   # int32 labels are accepted too
    assert gradcheck(lambda z: F.cross_entropy(z, labels), [logits])


def test_fused_cross_entropy_is_stable_for_huge_logits():
    z = Tensor(np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 0.0]], dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(z, np.array([0, 0]))
    loss.backward()
    assert np.isfinite(loss.item()) and abs(loss.item() - 5e3) < 1e-2
    np.testing.assert_allclose(z.grad, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-6)  # (p - onehot) / N


# ---------------------------------------------------------------- ReLU

@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_matches_the_reference(dtype):
    z = np.maximum(rng.standard_normal((4, 6)), 0).astype(dtype)
    g = rng.standard_normal((4, 6)).astype(dtype)
    np.testing.assert_array_equal(kernels.relu_backward(g, z), reference.relu_backward(g, z))
    # non-contiguous operands take the reference path, same answer
    np.testing.assert_array_equal(kernels.relu_backward(g.T, z.T), reference.relu_backward(g.T, z.T))
    np.testing.assert_array_equal(kernels.relu_backward(g[0, 0], z[0, 0]), g[0, 0] * (z[0, 0] > 0))


# ---------------------------------------------------------------- numba.cuda, simulated

CUDASIM_CHECK = textwrap.dedent("""
    import numpy as np
    from engine.kernels import cuda, reference
    rng = np.random.default_rng(0)
    for shape, kh, kw, s, p in [((2, 2, 5, 4), 3, 3, 1, 1), ((1, 2, 6, 6), 2, 2, 2, 0), ((1, 1, 5, 5), 3, 2, 2, 1)]:
        x = rng.standard_normal(shape)
        cols = cuda.im2col(x, kh, kw, s, p)
        assert np.array_equal(cols, reference.im2col(x, kh, kw, s, p)), "im2col"
        assert np.allclose(cuda.col2im(cols, shape, kh, kw, s, p), reference.col2im(cols, shape, kh, kw, s, p)), "col2im"
        out, am = cuda.max_pool_forward(x, kh, kw, s, p)
        r_out, r_am = reference.max_pool_forward(x, kh, kw, s, p)
        assert np.array_equal(out, r_out) and np.array_equal(am, r_am), "max_pool_forward"
        g = rng.standard_normal(out.shape)
        assert np.allclose(cuda.max_pool_backward(g, am, shape), reference.max_pool_backward(g, am, shape)), "max_pool_backward"
        assert np.allclose(cuda.avg_pool_forward(x, kh, kw, s, p), reference.avg_pool_forward(x, kh, kw, s, p)), "avg_pool_forward"
        assert np.allclose(cuda.avg_pool_backward(g, shape, kh, kw, s, p), reference.avg_pool_backward(g, shape, kh, kw, s, p)), "avg_pool_backward"
    z, y = rng.standard_normal((3, 4)), np.array([0, 3, 1])
    loss, probs = cuda.cross_entropy_forward(z, y)
    r_loss, r_probs = reference.cross_entropy_forward(z, y)
    assert np.allclose(loss, r_loss) and np.allclose(probs, r_probs), "cross_entropy_forward"
    assert np.allclose(cuda.cross_entropy_backward(probs, y, 0.5), reference.cross_entropy_backward(probs, y, 0.5)), "ce backward"
    g = rng.standard_normal((2, 3))
    assert np.array_equal(cuda.relu_backward(g, np.maximum(g, 0)), reference.relu_backward(g, np.maximum(g, 0))), "relu"
    gt, zt = g.T, np.maximum(g, 0).T          # transposed (not C-contiguous), as after a Transpose op
    assert np.array_equal(cuda.relu_backward(gt, zt), reference.relu_backward(gt, zt)), "relu, transposed"
    print("CUDASIM OK")
""")


def test_cuda_kernels_under_the_cuda_simulator():
    """The numba.cuda kernels, run by Numba's CUDA simulator on NumPy arrays (no GPU needed;
    the simulator must be chosen before Numba loads, hence the child process)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, "-c", CUDASIM_CHECK], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "CUDASIM OK" in run.stdout, run.stdout + run.stderr


# ---------------------------------------------------------------- the compilation cache

CACHE_CHECK = "from engine.kernels import cpu; import numpy as np; " \
              "cpu.relu_backward(np.ones(3), np.ones(3)); print(dict(cpu._relu_backward.stats.cache_hits))"


@pytest.mark.skipif(os.environ.get("NUMBA_DISABLE_JIT", "0") != "0", reason="NUMBA_DISABLE_JIT: nothing is compiled")
def test_a_second_process_loads_compiled_kernels_from_the_cache(tmp_path):
    """cache=True: the first process compiles and writes NUMBA_CACHE_DIR, the second loads."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    first, second = (subprocess.run([sys.executable, "-c", CACHE_CHECK], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=120) for _ in range(2))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.strip() == "{}" and "1" in second.stdout, (first.stdout, second.stdout)
    assert list(tmp_path.rglob("*.nbi")), "no cache index written"


# ---------------------------------------------------------------- Numba loads only when needed

def test_import_collectives_and_engine_do_not_load_numba():
    """Numba costs 0.6 s to import: moving arrays (collectives) and building models must not pay."""
    code = ("import sys, collectives, engine, engine.nn, engine.optim, engine.functional; "
            "assert 'numba' not in sys.modules, 'numba loaded'; "
            "engine.kernels.relu_backward(*[__import__('numpy').ones(2)] * 2); "
            "assert 'numba' in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_compile_all_compiles_every_cpu_kernel(dtype):
    seconds = kernels.compile_all(dtype)
    assert seconds >= 0
    if os.environ.get("NUMBA_DISABLE_JIT", "0") == "0":
        from numba.core.registry import CPUDispatcher
        jitted = [f for f in vars(cpu).values() if isinstance(f, CPUDispatcher) and f is not cpu.out_size]
        key = np.dtype(dtype).name
        missing = [f.__name__ for f in jitted if not any(key in str(sig) for sig in f.signatures)]
        assert not missing, missing
    assert kernels.compile_all(dtype) < seconds + 1.0   # the second time: nothing to compile


# ---------------------------------------------------------------- the contract: one signature

SIGNATURES_CHECK = textwrap.dedent("""
    import inspect
    from engine import kernels
    from engine.kernels import cpu, cuda, reference
    for name in kernels.KERNELS:
        expected = inspect.signature(getattr(kernels, name))
        for impl in (cpu, cuda, reference):
            got = inspect.signature(getattr(impl, name))
            assert got == expected, (impl.__name__, name, got, expected)
    print("SIGNATURES OK")
""")


def test_every_implementation_has_the_contracts_signatures():
    """reference, cpu and cuda each define every kernel with the dispatcher's exact signature
    (cuda.py imported under the simulator: numba.cuda needs no GPU to define kernels then)."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    run = subprocess.run([sys.executable, "-c", SIGNATURES_CHECK], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "SIGNATURES OK" in run.stdout, run.stdout + run.stderr
