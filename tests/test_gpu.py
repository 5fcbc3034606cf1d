"""device="cuda": every op and layer on CuPy arrays gives the CPU's answer (MATH A11).

These tests need CuPy and an NVIDIA GPU; without them every test here is skipped with the
reason below. (The numba.cuda kernels alone are also checked without a GPU, under Numba's
CUDA simulator: tests/test_kernels.py::test_cuda_kernels_under_the_cuda_simulator.)
"""
import numpy as np
import pytest

import engine.functional as F
from engine import Tensor, backend, kernels, manual_seed, models, nn, optim

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.cupy_available(),
                                 reason="needs CuPy and an NVIDIA GPU (pip install -e '.[gpu]')")]

rng = np.random.default_rng(0)


def both(fn, *arrays, requires_grad=True):
    """fn on cpu tensors and on cuda tensors made from the same float64 arrays; returns
    (cpu output, cuda output, cpu grads, cuda grads) after backward of a weighted sum."""
    results = []
    for device in ("cpu", "cuda"):
        inputs = [Tensor(a.copy(), requires_grad=requires_grad and a.dtype.kind == "f", device=device)
                  for a in arrays]
        out = fn(*inputs)
        weights = Tensor(np.linspace(-1, 1, out.data.size).reshape(out.shape), device=device)
        (out * weights).sum().backward()
        results.append((out, [t.grad for t in inputs]))
    (cpu_out, cpu_grads), (gpu_out, gpu_grads) = results
    assert gpu_out.device == "cuda"
    np.testing.assert_allclose(backend.to_numpy(gpu_out.data), cpu_out.data, rtol=1e-10, atol=1e-12)
    for a, b in zip(cpu_grads, gpu_grads):
        if a is not None:
            np.testing.assert_allclose(backend.to_numpy(b), a, rtol=1e-10, atol=1e-12)


X4 = rng.standard_normal((2, 3, 8, 8))
OPS = {
    "add": (lambda a, b: a + b, [rng.standard_normal((3, 4)), rng.standard_normal(4)]),
    "mul_div": (lambda a, b: a * b / (b * b + 1), [rng.standard_normal((3, 4)), rng.standard_normal((3, 4))]),
    "exp_log_tanh_sigmoid": (lambda a: (a.exp() + 1).log().tanh().sigmoid(), [rng.standard_normal((3, 4))]),
    "relu": (lambda a: a.relu(), [rng.standard_normal((3, 4))]),
    "sum_max_mean": (lambda a: a.sum(axis=0) + a.max(axis=0) + a.mean(axis=0), [rng.standard_normal((3, 4))]),
    "matmul": (lambda a, b: a @ b, [rng.standard_normal((3, 4)), rng.standard_normal((4, 2))]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [rng.standard_normal((5, 4)), rng.standard_normal((3, 4)),
                                                   rng.standard_normal(3)]),
    "reshape_transpose_getitem": (lambda a: a.reshape(4, 3).T[1:, [0, 2]], [rng.standard_normal((3, 4))]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 1, 1), [X4, rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)]),
    "conv2d_strided": (lambda x, w: F.conv2d(x, w, None, 2, 0), [X4, rng.standard_normal((2, 3, 3, 3))]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [X4]),
    "max_pool2d_overlap": (lambda x: F.max_pool2d(x, 3, 1, 1), [X4]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), [X4]),
    "log_softmax": (lambda a: F.log_softmax(a), [rng.standard_normal((3, 4))]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_on_cuda_equals_cpu(name):
    fn, arrays = OPS[name]
    both(fn, *arrays)


def test_cross_entropy_on_cuda_equals_cpu():
    labels = np.array([0, 3, 1, 2, 3])
    both(lambda z: F.cross_entropy(z, labels), rng.standard_normal((5, 4)))  # numpy labels move too


@pytest.mark.parametrize("impl", ["cuda", "reference"])
def test_gpu_kernels_equal_the_cpu_kernels(impl):
    """Both GPU implementations (numba.cuda, and the CuPy reference used when numba.cuda
    cannot compile) against the Numba CPU kernels, on device arrays."""
    import cupy
    if impl == "cuda" and not kernels.cuda_kernels_usable():
        pytest.skip("numba.cuda cannot compile here (no NVVM): the engine uses the CuPy reference")
    from engine.kernels import cuda, reference
    module = cuda if impl == "cuda" else reference
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    cols = module.im2col(cupy.asarray(x), 3, 3, 2, 1)
    np.testing.assert_array_equal(cupy.asnumpy(cols), kernels.im2col(x, 3, 3, 2, 1))
    np.testing.assert_allclose(cupy.asnumpy(module.col2im(cols, x.shape, 3, 3, 2, 1)),
                               kernels.col2im(cupy.asnumpy(cols), x.shape, 3, 3, 2, 1), rtol=1e-5, atol=1e-5)
    out, am = module.max_pool_forward(cupy.asarray(x), 3, 3, 2, 1)
    ref_out, ref_am = kernels.max_pool_forward(x, 3, 3, 2, 1)
    np.testing.assert_array_equal(cupy.asnumpy(out), ref_out)
    np.testing.assert_array_equal(cupy.asnumpy(am), ref_am)


def test_lenet5_trains_the_same_on_cuda_and_cpu():
    """Three SGD-momentum steps of LeNet-5 in float64 from the same start: same parameters."""
    x = rng.standard_normal((8, 1, 28, 28))
    y = rng.integers(0, 10, 8)
    params = []
    for device in ("cpu", "cuda"):
        manual_seed(0)
        model = models.build("lenet5")
        for p in model.parameters():
            p.data = p.data.astype(np.float64)
        model.to(device)
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(model(Tensor(x, device=device)), Tensor(y, device=device)).backward()
            opt.step()
        assert all(p.device == device for p in model.parameters())
        params.append([backend.to_numpy(p.data) for p in model.parameters()])
    for a, b in zip(*params):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)


def test_module_to_moves_parameters_and_back():
    layer = nn.Conv2d(1, 2, 3)
    before = layer.weight.data.copy()
    layer.to("cuda")
    assert layer.weight.device == "cuda" and layer.bias.device == "cuda"
    layer.to("cpu")
    np.testing.assert_array_equal(layer.weight.data, before)


def test_mixing_devices_names_both():
    with pytest.raises(ValueError, match=r"different devices.*'cpu'.*'cuda'"):
        Tensor(np.ones(3)) + Tensor(np.ones(3), device="cuda")
