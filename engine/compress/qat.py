"""Quantization-aware training (MATH A7): train through the rounding, then convert to int8.

Fake quantization rounds in the forward pass and stays float:

    fq(x) = s (clip(round(x / s) + z, -128, 127) - z)

so the loss sees the int8 model's error while every value is still a float32. round() has
derivative 0 almost everywhere, which would stop all learning; the straight-through estimator
(Bengio et al., 2013) pretends it is the identity inside the range and keeps the clip's zero:

    d fq / dx = 1   where -128 <= round(x / s) + z <= 127,   0 where the value was clipped

(the rounded value decides, as in PyTorch's fake_quantize). ``prepare_qat`` gives every Linear
fake-quantized weights (per-channel symmetric, scale from the current weights each step) and
inputs (per-tensor affine, scale from a moving average of the batches' min and max, updated in
train() and frozen in eval()); ``convert`` makes the QuantizedLinear that computes the same
integers, so its outputs are the fake-quant model's up to float rounding. Cost while training:
two elementwise passes per layer over input and weight, about 5 % of the matmul here.
"""
import copy

import numpy

from engine import functional as F
from engine import nn
from engine.autograd import Function
from engine.compress.quantization import (QMAX, QMIN, MinMaxObserver, QuantizedLinear, _along,
                                          dequantize, quantize)


class FakeQuantize(Function):
    """y = dequantize(quantize(x)) (options scale, zero_point, axis); dy/dx = the STE mask."""

    def forward(self, x, scale, zero_point, axis=None):
        r = numpy.rint(x / _along(scale, x.ndim, axis)) + _along(zero_point, x.ndim, axis)
        self.saved = ((r >= QMIN) & (r <= QMAX),)                  # inside: gradient passes
        return dequantize(quantize(x, scale, zero_point, axis), scale, zero_point, axis, x.dtype)

    def backward(self, g):
        (inside,) = self.saved
        return (g * inside,)


def fake_quantize(x, scale, zero_point, axis=None):
    """FakeQuantize on a Tensor."""
    return FakeQuantize.apply(x, scale=scale, zero_point=zero_point, axis=axis)


class QATLinear(nn.Module):
    """z = fq(x) fq(W)^T + b: a Linear that trains as its int8 version will compute.

    ``weight``/``bias`` are the float Linear's own Parameters (trained by any optimiser); the
    input observer averages min/max with constant ``averaging_constant`` while training."""

    def __init__(self, linear, averaging_constant=0.01):
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        self.input_observer = MinMaxObserver(symmetric=False, averaging_constant=averaging_constant)

    def weight_qparams(self):
        """Per-row symmetric (scale, 0) of the weights as they are now."""
        return MinMaxObserver(symmetric=True, per_channel=True).observe(self.weight).qparams()

    def forward(self, x):
        if self.training or self.input_observer.min is None:
            self.input_observer.observe(x)                  # observe, then quantize with it
        x = fake_quantize(x, *self.input_observer.qparams())
        w = fake_quantize(self.weight, *self.weight_qparams(), axis=0)
        return F.linear(x, w, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, fake int8"


def prepare_qat(model, averaging_constant=0.01):
    """A copy of the Sequential ``model`` whose Linear layers are QATLinear (others copied)."""
    model = copy.deepcopy(model)
    return nn.Sequential(*[QATLinear(m, averaging_constant) if isinstance(m, nn.Linear) else m
                           for m in model])


def convert(qat_model):
    """The int8 model: each QATLinear becomes the QuantizedLinear of its current weights and
    its observer's input qparams, so both quantize to the same integers."""
    layers = []
    for m in qat_model:
        if isinstance(m, QATLinear):
            w_scale, _ = m.weight_qparams()
            w = numpy.asarray(m.weight.data)
            bias = None if m.bias is None else numpy.asarray(m.bias.data)
            layers.append(QuantizedLinear(quantize(w, w_scale, 0, axis=0), w_scale, bias,
                                          *m.input_observer.qparams()))
        else:
            layers.append(copy.deepcopy(m))
    return nn.Sequential(*layers)
