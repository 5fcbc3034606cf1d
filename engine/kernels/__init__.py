"""Fast kernels for the hot loops, one module per device, one reference for all.

    reference.py   whole-array NumPy (or CuPy): short, obviously right, the tests' truth
    cpu.py         Numba ``@njit`` loop nests, compiled on first use and cached on disk
    cuda.py        ``numba.cuda`` kernels, one GPU thread per output entry

The ops (engine/ops/conv.py, the ReLU, the fused cross-entropy) call the functions
below, which pick the implementation from the array they are given (NumPy array: cpu.py;
CuPy array: cuda.py, or reference.py when numba.cuda cannot compile on that machine).
Every implementation has the same signature and returns arrays on the input's device.

    kernel                          what it computes                               used by
    im2col / col2im                 receptive fields as columns, and the adjoint   Conv2d
    max_pool_forward / _backward    window max + argmax; gradient to the argmax    MaxPool2d
    avg_pool_forward / _backward    window mean; gradient spread evenly            AvgPool2d
    cross_entropy_forward / _back.  fused, stable softmax + NLL, (p - onehot) g/N  F.cross_entropy
    relu_backward                   g where z > 0                                  ReLU
    sgd_update_, momentum_update_   p -= lr d; b = m b + (1 - dampening) g         optim.SGD
"""
import functools

import numpy

from engine import backend
from engine.kernels import cpu, reference


@functools.lru_cache(maxsize=None)
def cuda_kernels_usable():
    """True when numba.cuda can compile and launch a kernel here (the GPU needs a driver and
    NVVM, which a CuPy wheel alone does not bring). Probed once, on the first CuPy array."""
    try:
        from engine.kernels import cuda
        import cupy
        probe = cupy.ones(4, dtype=cupy.float32)
        out = cuda.relu_backward(probe, probe)
        return bool((out == 1).all())
    except Exception:  # no CUDA driver, no NVVM, no CuPy: use the CuPy reference instead
        return False


def implementation(array):
    """The module whose kernels run on ``array``'s device: cpu, cuda, or reference."""
    if type(array) is numpy.ndarray or backend.device_of(array) == "cpu":
        return cpu
    if cuda_kernels_usable():
        from engine.kernels import cuda
        return cuda
    return reference


def _ints(*values):
    return tuple(int(v) for v in values)


def im2col(x, kh, kw, stride, padding):
    """x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW)."""
    return implementation(x).im2col(x, *_ints(kh, kw, stride, padding))


def col2im(cols, x_shape, kh, kw, stride, padding):
    """cols (N, C*kh*kw, OH*OW) -> dx of shape x_shape, the adjoint of im2col."""
    impl = implementation(cols)
    if impl is cpu:
        return cpu.col2im(cols, *_ints(*x_shape, kh, kw, stride, padding))
    return impl.col2im(cols, tuple(x_shape), *_ints(kh, kw, stride, padding))


def max_pool_forward(x, kh, kw, stride, padding):
    """x (N, C, H, W) -> (out, argmax), argmax the index h * W + w of each window's maximum."""
    return implementation(x).max_pool_forward(x, *_ints(kh, kw, stride, padding))


def max_pool_backward(g, argmax, x_shape):
    """dx of x_shape: each window's gradient added at its argmax."""
    impl = implementation(g)
    if impl is cpu:
        return cpu.max_pool_backward(g, argmax, *_ints(*x_shape[2:]))
    return impl.max_pool_backward(g, argmax, tuple(x_shape))


def avg_pool_forward(x, kh, kw, stride, padding):
    return implementation(x).avg_pool_forward(x, *_ints(kh, kw, stride, padding))


def avg_pool_backward(g, x_shape, kh, kw, stride, padding):
    impl = implementation(g)
    if impl is cpu:
        return cpu.avg_pool_backward(g, *_ints(*x_shape[2:], kh, kw, stride, padding))
    return impl.avg_pool_backward(g, tuple(x_shape), *_ints(kh, kw, stride, padding))


def cross_entropy_forward(logits, labels):
    """(loss as a 0-d array of the logits' dtype, probs = softmax(logits))."""
    impl = implementation(logits)
    if impl is cpu:
        loss, probs = cpu.cross_entropy_forward(logits, labels)
        return numpy.asarray(loss, dtype=logits.dtype), probs
    return impl.cross_entropy_forward(logits, labels)


def cross_entropy_backward(probs, labels, scale):
    """scale * (probs - onehot(labels)); ``scale`` = g / N, a number or a 0-d array."""
    impl = implementation(probs)
    if impl is cpu:
        return cpu.cross_entropy_backward(probs, labels, probs.dtype.type(scale))
    return impl.cross_entropy_backward(probs, labels, scale)


def relu_backward(g, z):
    """g where z > 0, else 0."""
    impl = implementation(g)
    if impl is not cpu:
        return impl.relu_backward(g, z)
    if g.flags.c_contiguous and z.flags.c_contiguous and g.shape == z.shape and g.dtype == z.dtype:
        return cpu.relu_backward(g.reshape(-1), z.reshape(-1)).reshape(g.shape)
    return reference.relu_backward(g, z)  # the kernel walks both arrays flat, in memory order


def _flat_pair(a, b):
    """Both as 1-D views when they are C-contiguous NumPy arrays of one shape and dtype."""
    if (type(a) is numpy.ndarray and type(b) is numpy.ndarray and a.shape == b.shape and a.dtype == b.dtype
            and a.dtype.kind == "f" and a.flags.c_contiguous and b.flags.c_contiguous and a.flags.writeable):
        return a.reshape(-1), b.reshape(-1)
    return None


def sgd_update_(p, d, lr):
    """p -= lr * d in place, without the temporary ``lr * d`` (the same bits as NumPy's)."""
    flat = _flat_pair(p, d)
    if flat is None:
        p -= lr * d
    else:
        cpu.sgd_update_(flat[0], flat[1], p.dtype.type(lr))


def momentum_update_(buf, g, momentum, scale):
    """buf = momentum * buf + scale * g in place (the same bits as ``buf *= m; buf += s * g``)."""
    flat = _flat_pair(buf, g)
    if flat is None:
        buf *= momentum
        buf += scale * g
    else:
        cpu.momentum_update_(flat[0], flat[1], buf.dtype.type(momentum), buf.dtype.type(scale))
