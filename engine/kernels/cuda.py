"""The GPU kernels, written with ``numba.cuda`` (MATH A11: the same computation on a GPU).

They are the loop nests of ``cpu.py`` turned inside out: where a CPU kernel loops over the
outputs, here every output entry gets its own GPU thread, which finds its indices from its
global thread number ``t = blockIdx.x * blockDim.x + threadIdx.x``. Kernels that scatter
(col2im, pooling backward) are written as *gathers* where possible (each input entry sums
the windows that contain it), so no two threads write the same entry; max-pool backward
uses ``cuda.atomic.add`` because overlapping windows may pick the same maximum.

The arrays are CuPy arrays on a GPU (numba.cuda reads them through
``__cuda_array_interface__``, no copy) or, under Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), NumPy arrays: that is how tests/test_kernels.py checks these
kernels on a machine without a GPU. Each wrapper allocates its outputs with the input's
array module and launches one thread per output entry, in blocks of ``THREADS``.
"""
import math

from numba import cuda

from engine import backend
from engine.kernels.reference import momentum_update_, out_size, sgd_update_  # noqa: F401
# (the optimiser updates are CuPy's in-place expressions, as in the reference: each is one
# elementwise GPU kernel already, where NumPy's needed a hand-written loop to save a pass)

THREADS = 128


def _launch(kernel, total, *args):
    if total > 0:
        kernel[math.ceil(total / THREADS), THREADS](*args)


@cuda.jit(device=True)
def _unravel(t, C, H, W):
    """The (n, c, h, w) of entry t of a C-ordered (N, C, H, W) array."""
    return t // (W * H * C), (t // (W * H)) % C, (t // W) % H, t % W


@cuda.jit(cache=False)
def _im2col(x, cols, kh, kw, stride, padding, OH, OW):
    t = cuda.grid(1)
    N, C, H, W = x.shape
    if t >= cols.size:
        return
    p, r, n = t % (OH * OW), (t // (OH * OW)) % (C * kh * kw), t // (OH * OW * C * kh * kw)
    c, i, j = r // (kh * kw), (r // kw) % kh, r % kw
    h, w = (p // OW) * stride + i - padding, (p % OW) * stride + j - padding
    cols[n, r, p] = x[n, c, h, w] if 0 <= h < H and 0 <= w < W else 0


@cuda.jit(cache=False)
def _col2im(cols, dx, kh, kw, stride, padding, OH, OW):
    """One thread per dx entry: dx[n, c, h, w] = sum of the columns that copied it."""
    t = cuda.grid(1)
    N, C, H, W = dx.shape
    if t >= dx.size:
        return
    n, c, h, w = _unravel(t, C, H, W)
    total = 0.0                                   # float64 sum, stored in dx's dtype
    for i in range(kh):
        hh = h + padding - i                      # = oh * stride if this offset reaches (h, w)
        if hh < 0 or hh % stride != 0 or hh // stride >= OH:
            continue
        for j in range(kw):
            ww = w + padding - j
            if ww < 0 or ww % stride != 0 or ww // stride >= OW:
                continue
            total += cols[n, (c * kh + i) * kw + j, (hh // stride) * OW + ww // stride]
    dx[n, c, h, w] = total


@cuda.jit(cache=False)
def _max_pool_forward(x, out, argmax, kh, kw, stride, padding):
    t = cuda.grid(1)
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    if t >= out.size:
        return
    n, c, oh, ow = _unravel(t, C, OH, OW)
    best, where = x[n, c, 0, 0], -1
    for i in range(kh):
        h = oh * stride + i - padding
        for j in range(kw):
            w = ow * stride + j - padding
            if 0 <= h < H and 0 <= w < W and (where < 0 or x[n, c, h, w] > best):
                best, where = x[n, c, h, w], h * W + w
    out[n, c, oh, ow] = best
    argmax[n, c, oh, ow] = where


@cuda.jit(cache=False)
def _max_pool_backward(g, argmax, dx):
    """One thread per g entry; atomic because overlapping windows can share a maximum."""
    t = cuda.grid(1)
    N, C, OH, OW = g.shape
    W = dx.shape[3]
    if t >= g.size:
        return
    n, c, oh, ow = _unravel(t, C, OH, OW)
    k = argmax[n, c, oh, ow]
    cuda.atomic.add(dx, (n, c, k // W, k % W), g[n, c, oh, ow])


@cuda.jit(cache=False)
def _avg_pool_forward(x, out, kh, kw, stride, padding):
    t = cuda.grid(1)
    N, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    if t >= out.size:
        return
    n, c, oh, ow = _unravel(t, C, OH, OW)
    total = 0.0
    for i in range(kh):
        h = oh * stride + i - padding
        for j in range(kw):
            w = ow * stride + j - padding
            if 0 <= h < H and 0 <= w < W:
                total += x[n, c, h, w]
    out[n, c, oh, ow] = total / (kh * kw)


@cuda.jit(cache=False)
def _avg_pool_backward(g, dx, kh, kw, stride, padding):
    """One thread per dx entry (a gather, as in _col2im)."""
    t = cuda.grid(1)
    N, C, H, W = dx.shape
    OH, OW = g.shape[2], g.shape[3]
    if t >= dx.size:
        return
    n, c, h, w = _unravel(t, C, H, W)
    total = 0.0
    for i in range(kh):
        hh = h + padding - i
        if hh < 0 or hh % stride != 0 or hh // stride >= OH:
            continue
        for j in range(kw):
            ww = w + padding - j
            if ww < 0 or ww % stride != 0 or ww // stride >= OW:
                continue
            total += g[n, c, hh // stride, ww // stride]
    dx[n, c, h, w] = total / (kh * kw)


@cuda.jit(cache=False)
def _cross_entropy_forward(logits, labels, probs, losses):
    """One thread per row i: losses[i] = log sum_k e^(z_ik - m) - (z_{i,y_i} - m)."""
    i = cuda.grid(1)
    N, K = logits.shape
    if i >= N:
        return
    m = logits[i, 0]
    for k in range(1, K):
        m = max(m, logits[i, k])
    s = 0.0
    for k in range(K):
        e = math.exp(logits[i, k] - m)
        probs[i, k] = e
        s += e
    for k in range(K):
        probs[i, k] /= s
    losses[i] = math.log(s) - (logits[i, labels[i]] - m)


@cuda.jit(cache=False)
def _cross_entropy_backward(probs, labels, scale, d):
    t = cuda.grid(1)
    N, K = probs.shape
    if t >= probs.size:
        return
    i, k = t // K, t % K
    d[i, k] = (probs[i, k] - (1 if k == labels[i] else 0)) * scale[0]


@cuda.jit(cache=False)
def _relu_backward(g, z, out):
    e = cuda.grid(1)
    if e < out.size:
        out[e] = g[e] if z[e] > 0 else 0


# ---- wrappers with the signatures of cpu.py / reference.py ----

def im2col(x, kh, kw, stride, padding):
    xp = backend.array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    cols = xp.empty((N, C * kh * kw, OH * OW), dtype=x.dtype)
    _launch(_im2col, cols.size, x, cols, kh, kw, stride, padding, OH, OW)
    return cols


def col2im(cols, x_shape, kh, kw, stride, padding):
    xp = backend.array_module(cols)
    N, C, H, W = x_shape
    dx = xp.empty(x_shape, dtype=cols.dtype)
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    _launch(_col2im, dx.size, cols, dx, kh, kw, stride, padding, OH, OW)
    return dx


def max_pool_forward(x, kh, kw, stride, padding):
    xp = backend.array_module(x)
    N, C, H, W = x.shape
    shape = (N, C, out_size(H, kh, stride, padding), out_size(W, kw, stride, padding))
    out, argmax = xp.empty(shape, dtype=x.dtype), xp.empty(shape, dtype=xp.int64)
    _launch(_max_pool_forward, out.size, x, out, argmax, kh, kw, stride, padding)
    return out, argmax


def max_pool_backward(g, argmax, x_shape):
    dx = backend.array_module(g).zeros(x_shape, dtype=g.dtype)
    _launch(_max_pool_backward, g.size, g, argmax, dx)
    return dx


def avg_pool_forward(x, kh, kw, stride, padding):
    xp = backend.array_module(x)
    N, C, H, W = x.shape
    shape = (N, C, out_size(H, kh, stride, padding), out_size(W, kw, stride, padding))
    out = xp.empty(shape, dtype=x.dtype)
    _launch(_avg_pool_forward, out.size, x, out, kh, kw, stride, padding)
    return out


def avg_pool_backward(g, x_shape, kh, kw, stride, padding):
    dx = backend.array_module(g).empty(x_shape, dtype=g.dtype)
    _launch(_avg_pool_backward, dx.size, g, dx, kh, kw, stride, padding)
    return dx


def cross_entropy_forward(logits, labels):
    xp = backend.array_module(logits)
    N = logits.shape[0]
    probs, losses = xp.empty_like(logits), xp.empty(N, dtype=xp.float64)
    _launch(_cross_entropy_forward, N, logits, labels, probs, losses)
    return (losses.sum() / max(N, 1)).astype(logits.dtype), probs


def cross_entropy_backward(probs, labels, scale):
    xp = backend.array_module(probs)
    d = xp.empty_like(probs)
    # scale as a one-entry array (it may be a 0-d device array): no copy back to the host,
    # and the kernel compiles once per dtype, not once per Python type of the scale
    scale = xp.asarray(scale, dtype=probs.dtype).reshape(1)
    _launch(_cross_entropy_backward, d.size, probs, labels, scale, d)
    return d


def relu_backward(g, z):
    xp = backend.array_module(g)
    # The kernel walks flat views: reshape(-1) of a non-contiguous array (a transposed
    # gradient) would be a copy, and the kernel would write into that copy, not into out.
    g, z = xp.ascontiguousarray(g), xp.ascontiguousarray(z)
    out = xp.empty(g.shape, g.dtype)
    _launch(_relu_backward, out.size, g.reshape(-1), z.reshape(-1), out.reshape(-1))
    return out
