"""Elementwise ops. Each backward is (local derivative) * (incoming gradient g).

With broadcasting, the gradient of each operand is summed back to its shape
(see ``broadcasting.sum_to_shape``).
"""
import numpy

from engine import backend, kernels
from engine.autograd import Function
from engine.ops.broadcasting import broadcast_error, sum_to_shape


class Add(Function):
    """z = a + b;  dz/da = 1, dz/db = 1."""

    def forward(self, a, b):
        self.saved = (a.shape, b.shape)
        try:
            return a + b
        except ValueError:
            raise broadcast_error("add", a, b) from None

    def backward(self, g):
        a_shape, b_shape = self.saved
        return sum_to_shape(g, a_shape), sum_to_shape(g, b_shape)


class Mul(Function):
    """z = a * b;  dz/da = b, dz/db = a."""

    def forward(self, a, b):
        self.saved = (a, b)
        try:
            return a * b
        except ValueError:
            raise broadcast_error("mul", a, b) from None

    def backward(self, g):
        a, b = self.saved
        return sum_to_shape(g * b, a.shape), sum_to_shape(g * a, b.shape)


class Neg(Function):
    """z = -a;  dz/da = -1."""

    def forward(self, a):
        return -a

    def backward(self, g):
        return (-g,)


class Pow(Function):
    """z = a ** p for a scalar p;  dz/da = p * a ** (p - 1)."""

    def forward(self, a, exponent):
        self.saved = (a,)
        with numpy.errstate(divide="ignore"):  # 0 ** -1 = inf is meant (x / 0, as in PyTorch)
            return a ** a.dtype.type(exponent)

    def backward(self, g):
        (a,) = self.saved
        p = a.dtype.type(self.options["exponent"])
        if p == 0:  # a ** 0 = 1 is constant; p * a ** -1 would be 0 * inf = nan at a = 0
            return (g * 0,)
        with numpy.errstate(divide="ignore"):
            return (g * p * a ** (p - 1),)


class Exp(Function):
    """z = e^a;  dz/da = e^a = z."""

    def forward(self, a):
        z = backend.array_module(a).exp(a)
        self.saved = (z,)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * z,)


class Log(Function):
    """z = ln a;  dz/da = 1 / a."""

    def forward(self, a):
        self.saved = (a,)
        return backend.array_module(a).log(a)

    def backward(self, g):
        (a,) = self.saved
        return (g / a,)


class Tanh(Function):
    """z = tanh a;  dz/da = 1 - z^2."""

    def forward(self, a):
        z = backend.array_module(a).tanh(a)
        self.saved = (z,)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * (1 - z * z),)


class Sigmoid(Function):
    """z = 1 / (1 + e^-a);  dz/da = z (1 - z). Computed without overflow for large |a|."""

    def forward(self, a):
        xp = backend.array_module(a)
        e = xp.exp(-xp.abs(a))  # in (0, 1]: never overflows
        z = xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        self.saved = (z,)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (g * z * (1 - z),)


class ReLU(Function):
    """z = max(a, 0);  dz/da = 1 where a > 0, else 0 (a kernel: one pass, see engine/kernels)."""

    def forward(self, a):
        z = backend.array_module(a).maximum(a, 0)
        self.saved = (z,)
        return z

    def backward(self, g):
        (z,) = self.saved
        return (kernels.relu_backward(g, z),)
