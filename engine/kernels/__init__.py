"""Fast kernels for the hot loops, one module per device, one reference for all.

    reference.py   whole-array NumPy (or CuPy): short, obviously right, the tests' truth
    cpu.py         Numba ``@njit`` loop nests, compiled on first use and cached on disk
    cuda.py        ``numba.cuda`` kernels, one GPU thread per output entry

The contract: each kernel below has ONE signature, and the three modules implement it with
exactly that signature, returning arrays on the input's device. The functions here only
pick the module from the first array argument (NumPy array: cpu.py; CuPy array: cuda.py,
or reference.py where numba.cuda cannot compile) and pass the arguments on unchanged.

    kernel                                       what it computes                    used by
    im2col(x, kh, kw, stride, padding)           receptive fields as columns         Conv2d
    col2im(cols, x_shape, kh, kw, stride, padding)  the adjoint of im2col            Conv2d
    max_pool_forward(x, kh, kw, stride, padding) window max, argmax (h * W + w)      MaxPool2d
    max_pool_backward(g, argmax, x_shape)        gradient to each window's argmax    MaxPool2d
    avg_pool_forward(x, kh, kw, stride, padding) window mean                         AvgPool2d
    avg_pool_backward(g, x_shape, kh, kw, stride, padding)  g spread evenly          AvgPool2d
    cross_entropy_forward(logits, labels)        (0-d loss, softmax probs), fused    F.cross_entropy
    cross_entropy_backward(probs, labels, scale) scale * (p - onehot), scale = g/N   F.cross_entropy
    relu_backward(g, z)                          g where z > 0                       ReLU
    sgd_update_(p, d, lr)                        p -= lr d, in place                 optim.SGD
    momentum_update_(buf, g, momentum, scale)    buf = m buf + scale g, in place     optim.SGD

Numba (0.6 s to import) is loaded on the first kernel call, not by ``import engine``: a
process that only moves arrays (``import collectives``) never pays for it. The first call
per dtype also compiles (or loads from the disk cache); ``compile_all(dtype)`` does both
ahead of time, so that a timed first epoch measures training only.
"""
import functools
import time

import numpy

from engine import backend
from engine.kernels import reference


@functools.cache
def _cpu():
    from engine.kernels import cpu  # imports Numba: here, on the first CPU kernel call
    return cpu


@functools.cache
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
        return _cpu()
    if cuda_kernels_usable():
        from engine.kernels import cuda
        return cuda
    return reference


# ---- the table: every kernel, dispatched on its first argument, arguments unchanged ----

KERNELS = ("im2col", "col2im", "max_pool_forward", "max_pool_backward", "avg_pool_forward",
           "avg_pool_backward", "cross_entropy_forward", "cross_entropy_backward", "relu_backward",
           "sgd_update_", "momentum_update_")


def im2col(x, kh, kw, stride, padding):
    return implementation(x).im2col(x, kh, kw, stride, padding)


def col2im(cols, x_shape, kh, kw, stride, padding):
    return implementation(cols).col2im(cols, x_shape, kh, kw, stride, padding)


def max_pool_forward(x, kh, kw, stride, padding):
    return implementation(x).max_pool_forward(x, kh, kw, stride, padding)


def max_pool_backward(g, argmax, x_shape):
    return implementation(g).max_pool_backward(g, argmax, x_shape)


def avg_pool_forward(x, kh, kw, stride, padding):
    return implementation(x).avg_pool_forward(x, kh, kw, stride, padding)


def avg_pool_backward(g, x_shape, kh, kw, stride, padding):
    return implementation(g).avg_pool_backward(g, x_shape, kh, kw, stride, padding)


def cross_entropy_forward(logits, labels):
    return implementation(logits).cross_entropy_forward(logits, labels)


def cross_entropy_backward(probs, labels, scale):
    return implementation(probs).cross_entropy_backward(probs, labels, scale)


def relu_backward(g, z):
    return implementation(g).relu_backward(g, z)


def sgd_update_(p, d, lr):
    return implementation(p).sgd_update_(p, d, lr)


def momentum_update_(buf, g, momentum, scale):
    return implementation(buf).momentum_update_(buf, g, momentum, scale)


def compile_all(dtype=numpy.float32):
    """Import Numba and compile (or load from the disk cache) every CPU kernel for ``dtype``,
    by calling each once on a tiny input; returns the seconds it took. The runner calls it
    before training so that the first epoch's time excludes compilation."""
    start = time.perf_counter()
    dtype = numpy.dtype(dtype)
    x = numpy.ones((1, 1, 4, 4), dtype)                        # (N, C, H, W)
    cols = im2col(x, 2, 2, 2, 0)
    col2im(cols, x.shape, 2, 2, 2, 0)
    out, argmax = max_pool_forward(x, 2, 2, 2, 0)
    max_pool_backward(out, argmax, x.shape)
    avg_pool_backward(avg_pool_forward(x, 2, 2, 2, 0), x.shape, 2, 2, 2, 0)
    labels = numpy.zeros(2, numpy.int64)
    _, probs = cross_entropy_forward(numpy.ones((2, 3), dtype), labels)
    cross_entropy_backward(probs, labels, 0.5)
    flat = numpy.ones(4, dtype)
    relu_backward(flat, flat)
    sgd_update_(flat, numpy.ones(4, dtype), 0.1)
    momentum_update_(flat, numpy.ones(4, dtype), 0.9, 1.0)
    return time.perf_counter() - start
