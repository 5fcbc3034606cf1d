"""2-D convolution and pooling on NCHW batches, as matrix products and window kernels.

Convolution (cross-correlation, as in every DL library) of x (N, C, H, W) with a weight
(O, C, kh, kw), stride s, zero padding p:

    z[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] * x[n, c, oh*s + i - p, ow*s + j - p]

    OH = (H + 2p - kh) // s + 1,   OW likewise.

im2col copies every receptive field into a column, cols[n] of shape (C*kh*kw, OH*OW), and
the sum above becomes one matrix product per sample, done by BLAS (the cost: 2 N O C kh kw
OH OW flops forward, twice that backward). With Wm = W.reshape(O, C*kh*kw):

    forward    Z[n]  = Wm @ cols[n]                  (O, OH*OW)
    backward   dWm   = sum_n dZ[n] @ cols[n]^T       (O, C*kh*kw)     MATH F6: an outer product
               dcols = Wm^T @ dZ[n]                  (C*kh*kw, OH*OW), then col2im -> dx
               db    = sum over n, oh, ow of dZ

col2im adds each column entry back where im2col took it from: it is im2col's transpose,
which is why it gives the gradient. The kernels are in engine/kernels.
"""
from engine import backend, kernels
from engine.kernels import reference
from engine.autograd import Function


def _windows_fit(op, x, kh, kw, stride, padding):
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    if stride < 1 or padding < 0:
        raise ValueError(f"{op}: need stride >= 1 and padding >= 0, got {stride} and {padding}")
    H, W = x.shape[2] + 2 * padding, x.shape[3] + 2 * padding
    if kh > H or kw > W:
        raise ValueError(f"{op}: kernel ({kh}, {kw}) is larger than the padded input ({H}, {W})")


class Conv2d(Function):
    """z = conv(x, W) + b, by im2col and a batched matrix product (see the module docstring).
    Inputs (x, weight) or (x, weight, bias); options stride, padding (ints)."""

    def forward(self, x, weight, bias=None, stride=1, padding=0):
        O, C, kh, kw = weight.shape
        _windows_fit("conv2d", x, kh, kw, stride, padding)
        if x.shape[1] != C:
            raise ValueError(f"conv2d: input has {x.shape[1]} channels, weight {weight.shape} "
                             f"expects {C}")
        xp = backend.array_module(x)
        N, H, W = x.shape[0], x.shape[2], x.shape[3]
        OH, OW = reference.out_size(H, kh, stride, padding), reference.out_size(W, kw, stride, padding)
        cols = kernels.im2col(x, kh, kw, stride, padding)       # (N, C*kh*kw, OH*OW)
        z = xp.matmul(weight.reshape(O, -1), cols)              # (N, O, OH*OW)
        if bias is not None:
            z += bias.reshape(1, O, 1)
        self.saved = (cols, weight, x.shape)
        return z.reshape(N, O, OH, OW)

    def backward(self, g):
        cols, weight, x_shape = self.saved
        xp = backend.array_module(g)
        O, C, kh, kw = weight.shape
        o = self.options
        g = g.reshape(g.shape[0], O, -1)                        # (N, O, OH*OW)
        need = [t.requires_grad for t in self.inputs]
        dx = dw = db = None
        if need[0]:
            dcols = xp.matmul(weight.reshape(O, -1).T, g)       # (N, C*kh*kw, OH*OW)
            dx = kernels.col2im(dcols, x_shape, kh, kw, o.get("stride", 1), o.get("padding", 0))
        if need[1]:
            dw = xp.matmul(g, cols.transpose(0, 2, 1)).sum(axis=0).reshape(weight.shape)
        if len(need) > 2 and need[2]:
            db = g.sum(axis=(0, 2))
        return (dx, dw, db)[:len(need)]


class MaxPool2d(Function):
    """z[n, c, oh, ow] = max of x over the window;  dz/dx = 1 at the window's first maximum
    (PyTorch's choice for ties), 0 elsewhere: the gradient is routed to the saved argmax."""

    def forward(self, x, kernel_size, stride, padding):
        kh, kw = kernel_size
        _windows_fit("max_pool2d", x, kh, kw, stride, padding)
        if 2 * padding > min(kh, kw):
            raise ValueError(f"max_pool2d: padding {padding} must be at most half the kernel "
                             f"{kernel_size}, so that every window holds a real entry")
        z, argmax = kernels.max_pool_forward(x, kh, kw, stride, padding)
        self.saved = (argmax, x.shape)
        return z

    def backward(self, g):
        argmax, x_shape = self.saved
        return (kernels.max_pool_backward(backend.array_module(g).ascontiguousarray(g), argmax, x_shape),)


class AvgPool2d(Function):
    """z[n, c, oh, ow] = (1 / (kh kw)) sum of x over the window (padding counts as 0);
    dz/dx = 1 / (kh kw) for every entry of the window."""

    def forward(self, x, kernel_size, stride, padding):
        kh, kw = kernel_size
        _windows_fit("avg_pool2d", x, kh, kw, stride, padding)
        if 2 * padding > min(kh, kw):
            raise ValueError(f"avg_pool2d: padding {padding} must be at most half the kernel {kernel_size}")
        self.saved = (x.shape,)
        return kernels.avg_pool_forward(x, kh, kw, stride, padding)

    def backward(self, g):
        (x_shape,) = self.saved
        kh, kw = self.options["kernel_size"]
        o = self.options
        g = backend.array_module(g).ascontiguousarray(g)
        return (kernels.avg_pool_backward(g, x_shape, kh, kw, o["stride"], o["padding"]),)
