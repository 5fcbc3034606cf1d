"""Plain-array references of every kernel: short, vectorised, and the ground truth of the tests.

Each function here computes exactly what the kernel of the same name in ``cpu.py`` (Numba)
and ``cuda.py`` (numba.cuda) computes, with whole-array operations instead of loops. They
take their array module from the array (``xp``), so they run on NumPy and on CuPy alike:
on a GPU without a usable ``numba.cuda`` they are the fallback.

The sliding-window trick used throughout (im2col, pooling): for a kernel offset (i, j),
the input entries that offset touches in every output position form the strided slice

    xp[:, :, i : i + stride*OH : stride, j : j + stride*OW : stride]      # (N, C, OH, OW)

of the zero-padded input xp, so a loop over the kh*kw offsets visits every window entry.
"""
from engine import backend


def out_size(size, kernel, stride, padding):
    """Output length of a sliding window: floor((size + 2 padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _pad(x, padding, value=0):
    if padding == 0:
        return x
    xp = backend.array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=value)


def im2col(x, kh, kw, stride, padding):
    """cols[n, (c, i, j), (oh, ow)] = xpad[n, c, oh*stride + i, ow*stride + j].

    x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW): each column is one receptive field, so a
    convolution becomes the matrix product W (O, C*kh*kw) @ cols[n]."""
    xp = backend.array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    padded = _pad(x, padding)
    cols = xp.empty((N, C, kh, kw, OH, OW), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = padded[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
    return cols.reshape(N, C * kh * kw, OH * OW)


def col2im(cols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col: every column entry is added back to the input entry it was
    copied from (entries in several windows receive several terms). cols (N, C*kh*kw, OH*OW)
    -> dx (N, C, H, W)."""
    xp = backend.array_module(cols)
    N, C, H, W = x_shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    cols = cols.reshape(N, C, kh, kw, OH, OW)
    padded = xp.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride] += cols[:, :, i, j]
    return padded[:, :, padding:padding + H, padding:padding + W]


def _windows(x, kh, kw, stride, padding, fill):
    """(N, C, OH, OW, kh*kw): every window's entries, the padding filled with ``fill``."""
    xp = backend.array_module(x)
    N, C, H, W = x.shape
    OH, OW = out_size(H, kh, stride, padding), out_size(W, kw, stride, padding)
    padded = _pad(x, padding, fill)
    return xp.stack([padded[:, :, i:i + stride * OH:stride, j:j + stride * OW:stride]
                     for i in range(kh) for j in range(kw)], axis=-1)


def max_pool_forward(x, kh, kw, stride, padding):
    """out[n, c, oh, ow] = max over the window; argmax = h * W + w of the first maximum
    (PyTorch's ``return_indices``), an index into the unpadded (H, W) plane."""
    xp = backend.array_module(x)
    N, C, H, W = x.shape
    windows = _windows(x, kh, kw, stride, padding, -xp.inf)
    k = windows.argmax(axis=-1)                                     # (N, C, OH, OW) offset i*kw + j
    out = xp.take_along_axis(windows, k[..., None], axis=-1)[..., 0]
    OH, OW = out.shape[2:]
    h = xp.arange(OH).reshape(-1, 1) * stride + k // kw - padding
    w = xp.arange(OW).reshape(1, -1) * stride + k % kw - padding
    return out, (h * W + w).astype(xp.int64)


def max_pool_backward(g, argmax, x_shape):
    """dx[n, c, argmax[n, c, oh, ow]] += g[n, c, oh, ow]: each window's gradient goes to its
    maximum (overlapping windows may send several to one entry)."""
    xp = backend.array_module(g)
    N, C, H, W = x_shape
    dx = xp.zeros(N * C * H * W, dtype=g.dtype)
    flat = (xp.arange(N * C).reshape(-1, 1) * (H * W) + argmax.reshape(N * C, -1)).reshape(-1)
    if hasattr(xp.add, "at"):
        xp.add.at(dx, flat, g.reshape(-1))   # add.at: repeated indices accumulate
    else:                                    # CuPy before ufunc.at
        import cupyx
        cupyx.scatter_add(dx, flat, g.reshape(-1))
    return dx.reshape(x_shape)


def avg_pool_forward(x, kh, kw, stride, padding):
    """out = sum over the window / (kh * kw), padding counted as zeros (PyTorch's
    ``count_include_pad=True``)."""
    return _windows(x, kh, kw, stride, padding, 0).sum(axis=-1) / x.dtype.type(kh * kw)


def avg_pool_backward(g, x_shape, kh, kw, stride, padding):
    """Each window spreads g / (kh * kw) evenly over its entries: col2im of a constant."""
    xp = backend.array_module(g)
    N, C, H, W = x_shape
    share = g / g.dtype.type(kh * kw)                                # (N, C, OH, OW)
    cols = xp.broadcast_to(share[:, :, None, None], (N, C, kh, kw) + g.shape[2:])
    return col2im(cols.reshape(N, C * kh * kw, -1), x_shape, kh, kw, stride, padding)


def cross_entropy_forward(logits, labels):
    """(loss, probs): loss = (1/N) sum_i [log sum_k e^{z_ik} - z_{i,y_i}]  (MATH F3, F5),
    computed with m_i = max_k z_ik subtracted so no exponent is positive; probs = softmax(z)."""
    xp = backend.array_module(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = xp.arange(logits.shape[0])
    loss = (xp.log(s[:, 0]) - shifted[rows, labels]).sum() / max(logits.shape[0], 1)
    return loss.astype(logits.dtype), e / s


def cross_entropy_backward(probs, labels, scale):
    """dL/dz_ik = scale * (p_ik - [k = y_i]), scale = g / N."""
    xp = backend.array_module(probs)
    scale = xp.asarray(scale, dtype=probs.dtype)  # a number, or a 0-d array on the device
    d = probs * scale
    d[xp.arange(probs.shape[0]), labels] -= scale
    return d


def relu_backward(g, z):
    """g where z > 0, else 0 (z is the ReLU's output), as g times a 0/1 mask. (Where z <= 0
    and g is inf or nan this gives nan, the kernels 0, as PyTorch's threshold_backward.)"""
    return g * (z > 0)


def sgd_update_(p, d, lr):
    """p -= lr * d, in place."""
    p -= lr * d


def momentum_update_(buf, g, momentum, scale):
    """buf = momentum * buf + scale * g, in place."""
    buf *= momentum
    buf += scale * g
