"""Convolution and pooling layers on NCHW batches, as in ``torch.nn``."""
import numpy

from engine import functional as F
from engine.nn.init import fan_in_uniform_
from engine.nn.module import Module, Parameter, check_input


class Conv2d(Module):
    """z[n, o] = b[o] + sum_c W[o, c] (*) x[n, c]  -- each output channel sums one small
    kernel slid over every input channel (F.conv2d). x (N, C, H, W) -> (N, O, OH, OW).

    ``weight`` (out_channels, in_channels, kh, kw) and ``bias`` (out_channels,) start
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels * kh * kw, as in PyTorch.
    Cost: 2 N O C kh kw OH OW flops forward, twice that backward.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=numpy.float32, device="cpu"):
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        if min(in_channels, out_channels, kh, kw) < 1:
            raise ValueError(f"Conv2d: channels and kernel_size must be >= 1, got "
                             f"{in_channels}, {out_channels}, {kernel_size}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, (kh, kw)
        self.stride, self.padding = stride, padding
        fan_in = in_channels * kh * kw
        self.weight = fan_in_uniform_(Parameter(numpy.zeros((out_channels, in_channels, kh, kw)),
                                                dtype=dtype, device=device), fan_in)
        self.bias = fan_in_uniform_(Parameter(numpy.zeros(out_channels), dtype=dtype, device=device),
                                    fan_in) if bias else None

    def forward(self, x):
        check_input("Conv2d", x, 0, f"(N, C={self.in_channels}, H, W)")  # F.conv2d checks the shape
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class _Pool2d(Module):
    """A kh x kw window slid over each channel, reduced by ``pool`` (a function of F);
    stride defaults to the kernel size."""

    pool = None

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return self.pool(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum of each window (F.max_pool2d)."""

    pool = staticmethod(F.max_pool2d)


class AvgPool2d(_Pool2d):
    """The mean of each window (F.avg_pool2d)."""

    pool = staticmethod(F.avg_pool2d)
