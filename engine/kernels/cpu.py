"""The CPU kernels, compiled by Numba. Each docstring starts with the naive loop nest it
implements; ``reference.py`` has the same computation in whole-array NumPy, and
tests/test_kernels.py checks one against the other. Public functions have the signatures of
the kernel contract (engine/kernels/__init__.py); where the loop needs flat views or scalars of
the array's dtype, a few lines of Python arrange them before calling it (``_name``).

``@njit(cache=True)`` compiles a kernel on its first call with new argument types (float32 and
float64 are two) and caches the machine code on disk (``NUMBA_CACHE_DIR``) for later processes;
``engine.kernels.compile_all`` does it ahead of time. Each kernel runs on the calling thread (no
``parallel=True``: see engine/threads.py) without the GIL (``nogil=True``), so thread-ranks run
theirs at the same time. Debugging: ``NUMBA_DISABLE_JIT=1`` makes every kernel plain Python.
"""
import numpy as np
from numba import njit

from engine.kernels import reference

out_size = njit(cache=True, nogil=True)(reference.out_size)  # the reference's formula, compiled


@njit(cache=True, nogil=True)
def im2col(x, kh, kw, stride, padding):
    """x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW)::

        for n, c, i, j, oh, ow:
            h, w = oh*stride + i - padding, ow*stride + j - padding
            cols[n, (c*kh + i)*kw + j, oh*OW + ow] = x[n, c, h, w] if (h, w) inside else 0

    A copy, bound by memory bandwidth (the reference's slice copies are nearly as fast). The
    explicit ``0 <= h < H`` test lets LLVM drop negative-index wraparound (precomputed inside
    ranges measured 3x slower)."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    cols = np.empty((N, C * kh * kw, OH * OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for oh in range(OH):
                        h = oh * stride + i - padding
                        for ow in range(OW):
                            w = ow * stride + j - padding
                            if 0 <= h < H and 0 <= w < W:
                                cols[n, r, oh * OW + ow] = x[n, c, h, w]
                            else:
                                cols[n, r, oh * OW + ow] = 0
    return cols


@njit(cache=True, nogil=True)
def col2im(cols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col, cols (N, C*kh*kw, OH*OW) -> dx (N, C, H, W)::

        dx = 0
        for n, c, i, j, oh, ow:  (h, w as in im2col, when inside)
            dx[n, c, h, w] += cols[n, (c*kh + i)*kw + j, oh*OW + ow]
    """
    N, C, H, W = x_shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    dx = np.zeros((N, C, H, W), dtype=cols.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(kh):
                for j in range(kw):
                    r = (c * kh + i) * kw + j
                    for oh in range(OH):
                        h = oh * stride + i - padding
                        if h < 0 or h >= H:
                            continue
                        for ow in range(OW):
                            w = ow * stride + j - padding
                            if 0 <= w < W:
                                dx[n, c, h, w] += cols[n, r, oh * OW + ow]
    return dx


@njit(cache=True, nogil=True)
def max_pool_forward(x, kh, kw, stride, padding):
    """x (N, C, H, W) -> (out, argmax), both (N, C, OH, OW)::

        for n, c, oh, ow:
            out[n, c, oh, ow] = max of x[n, c, h, w] over the window (padding = -inf)
            argmax[n, c, oh, ow] = h * W + w of the first maximum

    The window is clipped to the input once per output entry, not tested per entry."""
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    argmax = np.empty((N, C, OH, OW), dtype=np.int64)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                h0 = oh * stride - padding
                h_lo, h_hi = max(h0, 0), min(h0 + kh, H)
                for ow in range(OW):
                    w0 = ow * stride - padding
                    w_lo, w_hi = max(w0, 0), min(w0 + kw, W)
                    best, where = x[n, c, h_lo, w_lo], h_lo * W + w_lo
                    for h in range(h_lo, h_hi):
                        for w in range(w_lo, w_hi):
                            if x[n, c, h, w] > best:
                                best, where = x[n, c, h, w], h * W + w
                    out[n, c, oh, ow] = best
                    argmax[n, c, oh, ow] = where
    return out, argmax


@njit(cache=True, nogil=True)
def max_pool_backward(g, argmax, x_shape):
    """g, argmax (N, C, OH, OW) -> dx (N, C, H, W)::

        dx = 0
        for n, c, oh, ow:
            dx[n, c, argmax // W, argmax % W] += g[n, c, oh, ow]
    (one (H, W) plane at a time: zeroed, then scattered into while it is still in cache)"""
    N, C, OH, OW = g.shape
    H, W = x_shape[2], x_shape[3]
    dx = np.empty((N, C, H, W), dtype=g.dtype)
    for n in range(N):
        for c in range(C):
            plane = dx[n, c].reshape(-1)   # a view: argmax indexes the flat (H, W) plane
            plane[:] = 0
            for oh in range(OH):
                for ow in range(OW):
                    plane[argmax[n, c, oh, ow]] += g[n, c, oh, ow]
    return dx


@njit(cache=True, nogil=True)
def avg_pool_forward(x, kh, kw, stride, padding):
    """x (N, C, H, W) -> out (N, C, OH, OW)::

        for n, c, oh, ow:
            out[n, c, oh, ow] = sum of x[n, c, h, w] over the window (padding = 0) / (kh*kw)
    """
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    out = np.empty((N, C, OH, OW), dtype=x.dtype)
    scale = 1.0 / (kh * kw)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                h0 = oh * stride - padding
                h_lo, h_hi = max(h0, 0), min(h0 + kh, H)
                for ow in range(OW):
                    w0 = ow * stride - padding
                    total = 0.0
                    for h in range(h_lo, h_hi):
                        for w in range(max(w0, 0), min(w0 + kw, W)):
                            total += x[n, c, h, w]
                    out[n, c, oh, ow] = total * scale
    return out


@njit(cache=True, nogil=True)
def avg_pool_backward(g, x_shape, kh, kw, stride, padding):
    """g (N, C, OH, OW) -> dx (N, C, H, W)::

        dx = 0
        for n, c, oh, ow, (h, w) in the window (inside):
            dx[n, c, h, w] += g[n, c, oh, ow] / (kh*kw)
    """
    N, C, OH, OW = g.shape
    H, W = x_shape[2], x_shape[3]
    scale = 1.0 / (kh * kw)
    if stride == kh == kw and padding == 0:
        # Windows that tile the input (LeNet's 2x2): each dx entry is written once, no zero fill.
        dx = np.empty((N, C, H, W), dtype=g.dtype)
        for n in range(N):
            for c in range(C):
                for h in range(H):
                    oh = h // kh
                    if oh >= OH:
                        dx[n, c, h, :] = 0
                        continue
                    for ow in range(OW):
                        share = g[n, c, oh, ow] * scale
                        for j in range(kw):
                            dx[n, c, h, ow * kw + j] = share
                    dx[n, c, h, OW * kw:] = 0
        return dx
    dx = np.zeros((N, C, H, W), dtype=g.dtype)
    for n in range(N):
        for c in range(C):
            for oh in range(OH):
                h0 = oh * stride - padding
                h_lo, h_hi = max(h0, 0), min(h0 + kh, H)
                for ow in range(OW):
                    w0 = ow * stride - padding
                    share = g[n, c, oh, ow] * scale
                    for h in range(h_lo, h_hi):
                        for w in range(max(w0, 0), min(w0 + kw, W)):
                            dx[n, c, h, w] += share
    return dx


def cross_entropy_forward(logits, labels):  # the loss as a 0-d array of the logits' dtype
    loss, probs = _cross_entropy_forward(logits, labels)
    return np.asarray(loss, dtype=logits.dtype), probs


@njit(cache=True, nogil=True)
def _cross_entropy_forward(logits, labels):
    """logits (N, K), labels (N,) -> (loss, probs (N, K)), one pass over each row::

        for i:
            m = max_k z[i, k]                       # so that every exponent is <= 0
            s = sum_k e^(z[i, k] - m)
            loss += log(s) - (z[i, y_i] - m)        # -log softmax(z_i)[y_i]  (MATH F3, F5)
            probs[i, k] = e^(z[i, k] - m) / s       # saved for the backward
        loss /= N

    Sums are taken in float64, whatever the dtype of the logits."""
    N, K = logits.shape
    probs = np.empty_like(logits)
    total = 0.0
    for i in range(N):
        m = logits[i, 0]
        for k in range(1, K):
            m = max(m, logits[i, k])
        s = 0.0
        for k in range(K):
            e = np.exp(logits[i, k] - m)
            probs[i, k] = e
            s += e
        inv = 1.0 / s
        for k in range(K):
            probs[i, k] *= inv
        total += np.log(s) - (logits[i, labels[i]] - m)
    return total / max(N, 1), probs


def cross_entropy_backward(probs, labels, scale):  # scale made a scalar of probs' dtype
    return _cross_entropy_backward(probs, labels, probs.dtype.type(scale))


@njit(cache=True, nogil=True)
def _cross_entropy_backward(probs, labels, scale):
    """dz[i, k] = scale * (probs[i, k] - [k == y_i]), with scale = g / N."""
    N, K = probs.shape
    d = np.empty_like(probs)
    for i in range(N):
        for k in range(K):
            d[i, k] = probs[i, k] * scale
        d[i, labels[i]] -= scale
    return d


def _same_layout(a, b):
    """Both C-contiguous, of one shape and dtype: the flat loops below walk them in step."""
    return a.shape == b.shape and a.dtype == b.dtype and a.flags.c_contiguous and b.flags.c_contiguous


def relu_backward(g, z):
    """g where z > 0: the kernel on flat views of C-contiguous operands, else the reference."""
    if not _same_layout(g, z):
        return reference.relu_backward(g, z)
    return _relu_backward(g.reshape(-1), z.reshape(-1)).reshape(g.shape)


@njit(cache=True, nogil=True)
def _relu_backward(g, z):
    """``for e: dz[e] = g[e] if z[e] > 0 else 0`` over flat views: one pass, one output, where
    NumPy's ``g * (z > 0)`` makes a boolean temporary and a second pass."""
    out = np.empty_like(g)
    for e in range(g.size):
        out[e] = g[e] if z[e] > 0 else 0
    return out


def sgd_update_(p, d, lr):
    """p -= lr * d in place: the kernel on flat views, else NumPy's expression (reference)."""
    if not (_same_layout(p, d) and p.dtype.kind == "f" and p.flags.writeable):
        return reference.sgd_update_(p, d, lr)
    _sgd_update_(p.reshape(-1), d.reshape(-1), p.dtype.type(lr))


def momentum_update_(buf, g, momentum, scale):
    """buf = momentum * buf + scale * g in place (kernel or reference, as sgd_update_)."""
    if not (_same_layout(buf, g) and buf.dtype.kind == "f" and buf.flags.writeable):
        return reference.momentum_update_(buf, g, momentum, scale)
    _momentum_update_(buf.reshape(-1), g.reshape(-1), buf.dtype.type(momentum), buf.dtype.type(scale))


@njit(cache=True, nogil=True)
def _sgd_update_(p, d, lr):
    """``for e: p[e] -= lr * d[e]`` (flat, lr of their dtype): no temporary for ``lr * d`` as in
    NumPy's ``p -= lr * d``, and the same roundings (no fused multiply-add), so the same bits."""
    for e in range(p.size):
        p[e] -= lr * d[e]


@njit(cache=True, nogil=True)
def _momentum_update_(buf, g, momentum, scale):
    """buf = momentum * buf + scale * g, in place (scale = 1 - dampening), one pass."""
    for e in range(buf.size):
        buf[e] = buf[e] * momentum + scale * g[e]
