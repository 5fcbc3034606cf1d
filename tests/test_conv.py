"""Conv2d, MaxPool2d, AvgPool2d: forward against loop nests written from the definitions,
gradients against finite differences (float64), layers against PyTorch's conventions.

The loop nests below are the definitions, independent of im2col and of the kernels: if the
fast path and its NumPy reference (tests/test_kernels.py) shared a mistake, these would
still catch it.
"""
import math

import numpy as np
import pytest

import engine.functional as F
from engine import Tensor, gradcheck, manual_seed, nn

rng = np.random.default_rng(0)


def conv2d_loops(x, w, b, stride, padding):
    """z[n, o, oh, ow] = b[o] + sum_{c, i, j} w[o, c, i, j] xpad[n, c, oh*s + i, ow*s + j]."""
    N, C, H, W = x.shape
    O, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH, OW = (H + 2 * padding - kh) // stride + 1, (W + 2 * padding - kw) // stride + 1
    z = np.zeros((N, O, OH, OW))
    for n in range(N):
        for o in range(O):
            for oh in range(OH):
                for ow in range(OW):
                    window = xp[n, :, oh * stride:oh * stride + kh, ow * stride:ow * stride + kw]
                    z[n, o, oh, ow] = (window * w[o]).sum() + (0 if b is None else b[o])
    return z


def pool_loops(x, k, stride, padding, reduce, fill):
    N, C, H, W = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill)
    OH, OW = (H + 2 * padding - k) // stride + 1, (W + 2 * padding - k) // stride + 1
    z = np.zeros((N, C, OH, OW))
    for oh in range(OH):
        for ow in range(OW):
            z[:, :, oh, ow] = reduce(xp[:, :, oh * stride:oh * stride + k, ow * stride:ow * stride + k], axis=(2, 3))
    return z


CONV_CASES = [  # (N, C, H, W), (O, kh, kw), stride, padding
    ((2, 3, 7, 6), (4, 3, 3), 1, 1),
    ((2, 2, 9, 9), (3, 3, 3), 2, 0),
    ((1, 1, 5, 5), (2, 5, 5), 1, 2),
    ((2, 3, 8, 7), (2, 2, 3), 3, 1),
    ((3, 1, 4, 4), (1, 1, 1), 1, 0),
]


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CONV_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward_equals_the_loop_nest(x_shape, w_shape, stride, padding, bias):
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal((w_shape[0], x_shape[1]) + w_shape[1:])
    b = rng.standard_normal(w_shape[0]) if bias else None
    z = F.conv2d(Tensor(x), Tensor(w), None if b is None else Tensor(b), stride, padding)
    np.testing.assert_allclose(z.data, conv2d_loops(x, w, b, stride, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, stride, padding", CONV_CASES[:4])
def test_conv2d_gradients_match_finite_differences(x_shape, w_shape, stride, padding):
    x = Tensor(rng.standard_normal(x_shape), requires_grad=True)
    w = Tensor(rng.standard_normal((w_shape[0], x_shape[1]) + w_shape[1:]), requires_grad=True)
    b = Tensor(rng.standard_normal(w_shape[0]), requires_grad=True)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, stride, padding), [x, w, b])


def test_conv2d_skips_the_input_gradient_when_not_needed():
    x = Tensor(rng.standard_normal((2, 1, 6, 6)))
    w = Tensor(rng.standard_normal((3, 1, 3, 3)), requires_grad=True)
    F.conv2d(x, w).sum().backward()
    assert x.grad is None and w.grad.shape == (3, 1, 3, 3)


POOL_CASES = [((2, 3, 8, 8), 2, 2, 0), ((2, 2, 7, 9), 3, 2, 1), ((1, 2, 5, 5), 3, 1, 1), ((2, 1, 6, 6), 2, 1, 0)]


@pytest.mark.parametrize("shape, k, stride, padding", POOL_CASES)
def test_max_pool_forward_equals_the_loop_nest(shape, k, stride, padding):
    x = rng.standard_normal(shape)
    z = F.max_pool2d(Tensor(x), k, stride, padding)
    np.testing.assert_array_equal(z.data, pool_loops(x, k, stride, padding, np.max, -np.inf))


@pytest.mark.parametrize("shape, k, stride, padding", POOL_CASES)
def test_avg_pool_forward_equals_the_loop_nest(shape, k, stride, padding):
    """Padding counts as zeros in the mean (PyTorch's count_include_pad=True)."""
    x = rng.standard_normal(shape)
    z = F.avg_pool2d(Tensor(x), k, stride, padding)
    np.testing.assert_allclose(z.data, pool_loops(x, k, stride, padding, np.mean, 0.0), rtol=1e-12)


@pytest.mark.parametrize("shape, k, stride, padding", POOL_CASES)
@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
def test_pool_gradients_match_finite_differences(pool, shape, k, stride, padding):
    # distinct values at least 1e-3 apart: a max never changes under the 1e-6 nudges
    x = Tensor(rng.permutation(np.prod(shape)).reshape(shape) * 1e-3, requires_grad=True)
    assert gradcheck(lambda x: pool(x, k, stride, padding), [x])


def test_max_pool_sends_a_tie_to_the_first_maximum_like_pytorch():
    x = Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [[[[1, 0], [0, 0]]]])


def test_overlapping_max_windows_add_their_gradients():
    x = Tensor(np.array([[[[0., 0, 0], [0, 9, 0], [0, 0, 0]]]]), requires_grad=True)
    F.max_pool2d(x, 2, stride=1).sum().backward()   # all four windows pick the centre
    assert x.grad[0, 0, 1, 1] == 4 and x.grad.sum() == 4


def test_float32_stays_float32():
    x = Tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    layer = nn.Conv2d(3, 4, 3, padding=1)
    z = F.avg_pool2d(F.max_pool2d(layer(x), 2), 2)
    z.sum().backward()
    assert z.dtype == x.grad.dtype == layer.weight.grad.dtype == np.float32


def test_conv2d_layer_shapes_and_pytorch_initialisation():
    manual_seed(0)
    layer = nn.Conv2d(3, 8, 5, stride=2, padding=1)
    assert layer.weight.shape == (8, 3, 5, 5) and layer.bias.shape == (8,)
    bound = 1 / math.sqrt(3 * 5 * 5)                  # fan_in = in_channels * kh * kw
    for p in (layer.weight, layer.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.8 * bound
    assert layer(Tensor(np.zeros((2, 3, 11, 11), np.float32))).shape == (2, 8, 5, 5)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert nn.Conv2d(3, 8, (3, 5), bias=False).bias is None
    assert "kernel_size=(5, 5)" in repr(layer)


def test_pool_layers_default_stride_is_the_kernel_size():
    x = Tensor(rng.standard_normal((1, 2, 6, 6)))
    assert nn.MaxPool2d(2)(x).shape == (1, 2, 3, 3)
    assert nn.AvgPool2d(3)(x).shape == (1, 2, 2, 2)
    assert nn.MaxPool2d(3, stride=1, padding=1)(x).shape == (1, 2, 6, 6)


def test_clear_errors():
    x = Tensor(np.zeros((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="input has 2 channels"):
        F.conv2d(x, Tensor(np.zeros((3, 1, 3, 3))))
    with pytest.raises(ValueError, match="4-D input"):
        F.conv2d(Tensor(np.zeros((2, 5, 5))), Tensor(np.zeros((3, 2, 3, 3))))
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(x, Tensor(np.zeros((3, 2, 7, 7))))
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(NotImplementedError, match="stride must be the same"):
        F.conv2d(x, Tensor(np.zeros((3, 2, 3, 3))), stride=(1, 2))
    with pytest.raises(ValueError, match="channels and kernel_size"):
        nn.Conv2d(0, 3, 3)
