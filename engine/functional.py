"""Functions of tensors used by layers and losses (``engine.functional as F``).

Most are written through the primitive ops; ``log_softmax``,
``binary_cross_entropy`` and ``cross_entropy`` are ops of their own so that they
are numerically stable (``cross_entropy`` is one fused kernel; its definition,
``log_softmax`` followed by picking each sample's label, is the fallback for
empty batches and float16). ``linear`` on a 2-D batch is one op, ``Affine``.
"""
import numpy

from engine import backend, kernels, ops
from engine.autograd import Function
from engine.random import default_generator
from engine.tensor import Tensor


def relu(x):
    return x.relu()


def sigmoid(x):
    return x.sigmoid()


def tanh(x):
    return x.tanh()


def linear(x, weight, bias=None):
    """z = x W^T + b  (MATH F1 for a batch: each row of x is one sample). x (N, in), W (out, in).

    The common case (2-D x, one dtype, bias (out,)) is one fused op, ``ops.Affine``;
    anything else (leading batch axes, mixed dtypes) is the same formula through primitives."""
    if (x.ndim == 2 and weight.ndim == 2 and x.shape[1] == weight.shape[1] and x.dtype == weight.dtype
            and (bias is None or (bias.shape == weight.shape[:1] and bias.dtype == x.dtype))):
        return ops.Affine.apply(x, weight) if bias is None else ops.Affine.apply(x, weight, bias)
    z = x @ weight.T
    return z if bias is None else z + bias


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation) of x (N, C, H, W) with weight (O, C, kh, kw),
    plus bias (O,): z (N, O, OH, OW), OH = (H + 2 padding - kh) // stride + 1.
    ``stride`` and ``padding`` are ints (the same along both axes). See engine/ops/conv.py."""
    stride, padding = _same_both_axes("conv2d", "stride", stride), _same_both_axes("conv2d", "padding", padding)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    return ops.Conv2d.apply(*inputs, stride=stride, padding=padding)


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over kh x kw windows moved by ``stride`` (default: the kernel size, so windows
    tile the input); padding counts as -inf. x (N, C, H, W) -> (N, C, OH, OW)."""
    kernel_size, stride, padding = _pool_options("max_pool2d", kernel_size, stride, padding)
    return ops.MaxPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Mean over kh x kw windows (padding counts as 0, PyTorch's count_include_pad=True)."""
    kernel_size, stride, padding = _pool_options("avg_pool2d", kernel_size, stride, padding)
    return ops.AvgPool2d.apply(x, kernel_size=kernel_size, stride=stride, padding=padding)


def _pair(value):
    return (value, value) if isinstance(value, (int, numpy.integer)) else tuple(value)


def _same_both_axes(op, name, value):
    a, b = _pair(value)
    if a != b:
        raise NotImplementedError(f"{op}: {name} must be the same along both axes, got {value}")
    return int(a)


def _pool_options(op, kernel_size, stride, padding):
    kernel_size = tuple(int(k) for k in _pair(kernel_size))
    if len(kernel_size) != 2 or min(kernel_size) < 1:
        raise ValueError(f"{op}: kernel_size must be a positive int or pair, got {kernel_size}")
    stride = kernel_size if stride is None else stride  # windows tile the input
    return kernel_size, _same_both_axes(op, "stride", stride), _same_both_axes(op, "padding", padding)


class LogSoftmax(Function):
    """z_k = a_k - log sum_j e^{a_j}, computed as (a_k - m) - log sum_j e^{a_j - m}, m = max_j a_j.

    Subtracting the max leaves z unchanged and keeps every exponent <= 0, so
    nothing overflows. dz_k/da_j = [k = j] - softmax(a)_j, hence
    dL/da = g - softmax(a) * sum_k g_k.
    """

    def forward(self, a, axis):
        xp = backend.array_module(a)
        if a.shape[axis] == 0:  # no entries to normalise (and no max to subtract): empty result
            self.saved = (a,)
            return a.copy()
        shifted = a - a.max(axis=axis, keepdims=True)
        z = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        self.saved = (z,)
        return z

    def backward(self, g):
        (z,) = self.saved
        xp = backend.array_module(g)
        return (g - xp.exp(z) * g.sum(axis=self.options["axis"], keepdims=True),)


def log_softmax(x, axis=-1):
    """Of an integer or bool tensor: float32 (engine/ops/dtypes.py), as softmax, exp, tanh."""
    return LogSoftmax.apply(ops.to_floating(x), axis=axis)


def softmax(x, axis=-1):
    """softmax(z)_k = e^{z_k} / sum_j e^{z_j}  (MATH F3), as exp(log_softmax): stable."""
    return log_softmax(x, axis).exp()


def cross_entropy(logits, labels):
    """CE = -(1/n) sum_i log softmax(logits_i)[y_i]  (MATH F5 with one-hot y).

    ``logits`` (N, C) floats; ``labels`` (N,) integer class indices in [0, C).
    """
    labels = backend.to_device(labels.data if isinstance(labels, Tensor) else labels, logits.device)
    if logits.ndim != 2 or labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(f"cross_entropy: expected logits (N, C) and labels (N,), "
                         f"got shapes {logits.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: labels must be integer class indices, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"cross_entropy: labels must lie in [0, {logits.shape[1]}), "
                         f"got values from {labels.min()} to {labels.max()}")
    if labels.shape[0] == 0 or logits.dtype not in (numpy.float32, numpy.float64):
        # an empty batch, or a dtype the kernels are not compiled for (float16):
        # the op-by-op formula, exactly as before the fused op existed
        xp = backend.array_module(logits.data)
        picked = log_softmax(logits, axis=1)[xp.arange(labels.shape[0]), labels]
        return -picked.mean()
    return CrossEntropy.apply(logits, labels=labels)


class CrossEntropy(Function):
    """CE = -(1/N) sum_i log softmax(z_i)[y_i], fused into one op (MATH F3, F5).

    Through primitives it is log_softmax, an index, a mean and a negation: four graph nodes,
    the index's backward scattering into a zero array. Fused, one kernel makes one pass over
    each row (max, sum of exponentials, the loss term, the probabilities p), and the
    backward is the classic

        dCE/dz_ik = (p_ik - [k = y_i]) / N          (times the incoming gradient g)

    Same numbers as log_softmax + pick (tests/test_kernels.py checks both ways and against
    finite differences). Kernels: engine/kernels (Numba on cpu, numba.cuda on cuda).
    """

    def forward(self, logits, labels):
        labels = labels.astype(numpy.int64, copy=False) if type(labels) is numpy.ndarray else labels
        loss, probs = kernels.cross_entropy_forward(logits, labels)
        self.saved = (probs, labels)
        return loss

    def backward(self, g):
        probs, labels = self.saved
        scale = g / probs.shape[0]
        return (kernels.cross_entropy_backward(probs, labels, scale),)


def _check_same_shape(op, a, b):
    if a.shape != b.shape:
        raise ValueError(f"{op}: input shape {a.shape} and target shape {b.shape} differ")


def mse_loss(input, target):
    """MSE = (1/n) sum_i (yhat_i - y_i)^2  (MATH F4), the mean over every entry."""
    target = target if isinstance(target, Tensor) else Tensor(target, dtype=input.dtype)
    _check_same_shape("mse_loss", input, target)
    return ((input - target) ** 2).mean()


class BinaryCrossEntropy(Function):
    """BCE = -(1/n) sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)]  (MATH F5, two classes).

    As in PyTorch, each log is clamped at -100 so p = 0 or 1 gives a finite loss,
    and dBCE/dp_i = (p_i - y_i) / max(p_i (1 - p_i), 1e-12) / n.
    """

    def forward(self, p, y):
        xp = backend.array_module(p)
        if p.size and (p.min() < 0 or p.max() > 1):
            raise ValueError("binary_cross_entropy: input probabilities must lie in [0, 1]")
        self.saved = (p, y)
        with numpy.errstate(divide="ignore"):  # log(0) = -inf is meant: clamped to -100 next
            log_p = xp.maximum(xp.log(p), -100)
            log_1mp = xp.maximum(xp.log(1 - p), -100)
        return -(y * log_p + (1 - y) * log_1mp).mean()

    def backward(self, g):
        p, y = self.saved
        xp = backend.array_module(p)
        return (g * (p - y) / xp.maximum(p * (1 - p), 1e-12) / max(p.size, 1), None)


def binary_cross_entropy(input, target):
    """``input`` probabilities in [0, 1] (e.g. a sigmoid's output), ``target`` 0/1 of the same shape."""
    target = target if isinstance(target, Tensor) else Tensor(target, dtype=input.dtype)
    _check_same_shape("binary_cross_entropy", input, target)
    return BinaryCrossEntropy.apply(input, target.to(dtype=input.dtype))


def dropout(x, p=0.5, training=True, generator=None):
    """Zero each entry with probability p and scale the rest by 1/(1 - p) (inverted dropout),
    so the expected value is unchanged and evaluation needs no rescaling."""
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: probability p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0.0
    generator = generator or default_generator()
    keep = generator.random(x.shape) >= p
    mask = backend.to_device(keep.astype(x.dtype) / x.dtype.type(1 - p), x.device)
    return x * Tensor(mask)
