"""Post-training quantization (MATH A7): q = round(x / s) + z, x ~ s (q - z), in int8.

Conventions (all int8; quantize always clips to the full range [-128, 127]):

    symmetric  s = max|x| / 127,            z = 0      calibrated x land in [-127, 127]
    affine     s = (max - min) / 255,       z = round(-min / s) - 128   x in [min, max] -> [-128, 127]

The affine range is widened to include 0 (min <= 0 <= max), so that 0 -- a ReLU's output, a
padding -- is exactly representable. Rounding is to nearest (``numpy.rint``), so for x inside
the calibrated range |dequantize(quantize(x)) - x| <= s / 2 per entry. Per channel, each row of
``axis`` (an output unit of a weight) has its own s: a row of small weights does not lose its
bits to another row's outlier.

``quantize_model`` turns Linear layers into QuantizedLinear (int8 weights per-channel symmetric,
float32 bias, input per-tensor affine calibrated on a few batches, int8 x int8 -> int32 product:
engine/compress/int8.py); Conv2d, ReLU, pooling stay float. 1 byte a weight instead of 4.
"""
import copy
import json

import numpy

from engine import nn
from engine.autograd import no_grad
from engine.compress.int8 import int8_matmul
from engine.tensor import Tensor

QMIN, QMAX = -128, 127


def _along(values, ndim, axis):
    """Per-channel values shaped to broadcast against an ndim array along ``axis`` (or as is)."""
    values = numpy.asarray(values, dtype=numpy.float64)
    if axis is None or values.ndim == 0:
        return values
    shape = [1] * ndim
    shape[axis] = -1
    return values.reshape(shape)


def quantize(x, scale, zero_point, axis=None):
    """clip(rint(x / scale) + zero_point, -128, 127) as int8; scale, zero_point per row of axis."""
    x = numpy.asarray(x)
    s, z = _along(scale, x.ndim, axis), _along(zero_point, x.ndim, axis)
    return numpy.clip(numpy.rint(x / s) + z, QMIN, QMAX).astype(numpy.int8)


def dequantize(q, scale, zero_point, axis=None, dtype=numpy.float32):
    """scale * (q - zero_point), as ``dtype``."""
    q = numpy.asarray(q)
    s, z = _along(scale, q.ndim, axis), _along(zero_point, q.ndim, axis)
    return (s * (q.astype(numpy.float64) - z)).astype(dtype)


def _rows(x, axis):  # x as (channels along axis, everything else)
    return numpy.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def _qparams(lo, hi, symmetric):
    """(scale, zero_point) float32 / int32 arrays from the observed lo <= hi (see the table)."""
    lo, hi = numpy.minimum(lo, 0.0), numpy.maximum(hi, 0.0)
    scale = numpy.maximum(-lo, hi) / 127.0 if symmetric else (hi - lo) / 255.0
    scale = numpy.where(scale > 0, scale, 1.0)           # all zeros: any scale represents them
    zero = numpy.zeros_like(scale) if symmetric else numpy.rint(-lo / scale) + QMIN
    return scale.astype(numpy.float32), numpy.clip(zero, QMIN, QMAX).astype(numpy.int32)


class MinMaxObserver:
    """The range of everything observed: running min and max over calibration batches, or, with
    ``averaging_constant`` c, their moving averages m <- (1 - c) m + c m_batch (QAT, where an
    early batch's range should be forgotten). Per channel: one range per row of ``axis``."""

    def __init__(self, symmetric=True, per_channel=False, axis=0, averaging_constant=None):
        self.symmetric, self.per_channel, self.axis = symmetric, per_channel, axis
        self.averaging_constant = averaging_constant
        self.min = self.max = None

    def _batch_range(self, x):
        rows = _rows(x, self.axis) if self.per_channel else x.reshape(1, -1)
        lo, hi = rows.min(axis=1), rows.max(axis=1)
        return (lo, hi) if self.per_channel else (lo[0], hi[0])

    def observe(self, x):
        x = numpy.asarray(x.data if isinstance(x, Tensor) else x, dtype=numpy.float64)
        self._update(*self._batch_range(x))
        return self

    def _update(self, lo, hi):
        if self.min is None:
            self.min, self.max = lo, hi
        elif self.averaging_constant is None:
            self.min, self.max = numpy.minimum(self.min, lo), numpy.maximum(self.max, hi)
        else:
            c = self.averaging_constant
            self.min, self.max = (1 - c) * self.min + c * lo, (1 - c) * self.max + c * hi

    def qparams(self, bits=8):
        """(scale, zero_point): 0-d arrays, or one per row of ``axis`` when per_channel."""
        if bits != 8 or self.min is None:
            raise ValueError(f"{type(self).__name__}: 8 bits only (got {bits}), after observe()")
        return _qparams(self.min, self.max, self.symmetric)


class PercentileObserver(MinMaxObserver):
    """Like MinMaxObserver, but a batch's range is its ``percentile``-th percentile (of |x| when
    symmetric; the (100 - p)-th and p-th when affine), averaged over batches: a few outliers
    no longer stretch s for everyone, at the cost of clipping them. O(1) memory per batch."""

    def __init__(self, percentile=99.9, symmetric=True, per_channel=False, axis=0):
        super().__init__(symmetric, per_channel, axis)
        self.percentile, self.batches = percentile, 0

    def _batch_range(self, x):
        rows = _rows(x, self.axis) if self.per_channel else x.reshape(1, -1)
        if self.symmetric:
            hi = numpy.percentile(numpy.abs(rows), self.percentile, axis=1)
            lo = -hi
        else:
            lo, hi = numpy.percentile(rows, [100 - self.percentile, self.percentile], axis=1)
        return (lo, hi) if self.per_channel else (lo[0], hi[0])

    def _update(self, lo, hi):
        b = self.batches = self.batches + 1
        self.min = lo if b == 1 else self.min + (lo - self.min) / b     # the running mean
        self.max = hi if b == 1 else self.max + (hi - self.max) / b


OBSERVERS = {"minmax": MinMaxObserver, "percentile": PercentileObserver}


class QuantizedLinear(nn.Module):
    """y = s_x s_w[o] (acc - z_x sum_k q_w[o, k]) + b, acc = q_x @ q_w^T in int32 (int8.py).

    ``weight`` int8 (out, in) with ``weight_scale`` (out,) or a 0-d array (symmetric, z = 0);
    ``bias`` float32 (out,) or None; the input is quantized with (input_scale, input_zero_point),
    per tensor. Output float32 (the next layer quantizes its own input). Inference only: no
    parameters, no gradient."""

    def __init__(self, weight, weight_scale, bias, input_scale, input_zero_point):
        self.weight = numpy.asarray(weight, dtype=numpy.int8)
        self.weight_scale = numpy.asarray(weight_scale, dtype=numpy.float32)
        self.bias = None if bias is None else numpy.asarray(bias, dtype=numpy.float32)
        self.input_scale = numpy.asarray(input_scale, dtype=numpy.float32)
        self.input_zero_point = numpy.asarray(input_zero_point, dtype=numpy.int32)
        self.out_features, self.in_features = self.weight.shape
        self._weight_t = numpy.ascontiguousarray(self.weight.T)          # (in, out) for the kernel
        self._row_sums = self.weight.astype(numpy.int64).sum(axis=1)    # sum_k q_w[o, k]

    @classmethod
    def from_float(cls, linear, input_scale, input_zero_point, per_channel=True, observer="minmax"):
        """Quantize a float ``nn.Linear``'s weight (symmetric, per row if ``per_channel``)."""
        w = numpy.asarray(linear.weight.data)
        obs = OBSERVERS[observer](symmetric=True, per_channel=per_channel, axis=0).observe(w)
        scale, _ = obs.qparams()
        bias = None if linear.bias is None else numpy.asarray(linear.bias.data)
        return cls(quantize(w, scale, 0, axis=0 if per_channel else None), scale, bias,
                   input_scale, input_zero_point)

    def forward(self, x):
        x = numpy.asarray(x.data if isinstance(x, Tensor) else x)
        q = quantize(x, self.input_scale, self.input_zero_point)
        acc = int8_matmul(q, self._weight_t).astype(numpy.int64)
        acc -= int(self.input_zero_point) * self._row_sums              # the z_x term, exact
        y = (acc * (self.input_scale.astype(numpy.float64) * self.weight_scale)).astype(numpy.float32)
        return Tensor(y if self.bias is None else y + self.bias)

    def nbytes(self):
        return sum(getattr(self, n).nbytes for n in _QUANTIZED_ARRAYS if getattr(self, n) is not None)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_model(model, calibration_batches, observer="minmax", per_channel=True):
    """A copy of the Sequential ``model`` whose Linear layers are QuantizedLinear.

    Each Linear's input range is observed (per tensor, affine) while the calibration batches
    (arrays or Tensors) run through the float model; its weight is quantized per channel
    (symmetric). The float model is left as it was."""
    layers = list(model)
    observers = {i: OBSERVERS[observer](symmetric=False) for i, m in enumerate(layers)
                 if isinstance(m, nn.Linear)}
    with no_grad():
        for batch in calibration_batches:
            x = batch if isinstance(batch, Tensor) else Tensor(numpy.asarray(batch, numpy.float32))
            for i, layer in enumerate(layers):
                if i in observers:
                    observers[i].observe(x)
                x = layer(x)
    out = []
    for i, layer in enumerate(layers):
        if i in observers:
            out.append(QuantizedLinear.from_float(layer, *observers[i].qparams(),
                                                  per_channel=per_channel, observer=observer))
        else:
            out.append(copy.deepcopy(layer))
    return nn.Sequential(*out)


def model_bytes(model):
    """Bytes of a model's weights: float parameters' nbytes plus QuantizedLinear's arrays."""
    return sum(m.nbytes() if isinstance(m, QuantizedLinear) else
               sum(v.data.nbytes for v in vars(m).values() if isinstance(v, nn.Parameter))
               for m in model.modules())


# ------------------------------------------------------------------ files

_LAYERS = {"ReLU": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh, "Flatten": nn.Flatten,
           "MaxPool2d": nn.MaxPool2d, "AvgPool2d": nn.AvgPool2d, "Dropout": nn.Dropout,
           "Linear": nn.Linear, "Conv2d": nn.Conv2d}
_QUANTIZED_ARRAYS = ("weight", "weight_scale", "bias", "input_scale", "input_zero_point")


def save_quantized(model, path):
    """One ``numpy.savez`` file: int8 weights, float32 scales and biases, and a JSON layout
    (each layer's type and int/float/tuple options). No pickle; ``load_quantized`` rebuilds it."""
    arrays, layout = {}, []
    for i, layer in enumerate(model):
        kind, quantized = type(layer).__name__, isinstance(layer, QuantizedLinear)
        if kind not in _LAYERS and not quantized:
            raise TypeError(f"save_quantized: cannot save a {kind} layer")
        names = [n for n in _QUANTIZED_ARRAYS if getattr(layer, n) is not None] if quantized else \
            [k for k, v in vars(layer).items() if isinstance(v, nn.Parameter)]
        arrays.update({f"{i}.{n}": numpy.asarray(getattr(layer, n).data if not quantized
                                                 else getattr(layer, n)) for n in names})
        options = {} if quantized else {k: v for k, v in vars(layer).items() if k != "training"
                                        and isinstance(v, (int, float, tuple, type(None)))}
        layout.append({"type": kind, "options": options, "arrays": names})
    numpy.savez(path, __layout__=numpy.array(json.dumps(layout)), **arrays)


def load_quantized(path):
    """The Sequential written by ``save_quantized``."""
    layers = []
    with numpy.load(path, allow_pickle=False) as f:
        for i, entry in enumerate(json.loads(str(f["__layout__"]))):
            arrays = {n: f[f"{i}.{n}"] for n in entry["arrays"]}
            if entry["type"] == "QuantizedLinear":
                layers.append(QuantizedLinear(**{n: arrays.get(n) for n in _QUANTIZED_ARRAYS}))
                continue
            options = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["options"].items()}
            layer = _LAYERS[entry["type"]](**options)       # a bias=None option drops the bias
            for n, a in arrays.items():
                getattr(layer, n).data[...] = a
            layers.append(layer)
    return nn.Sequential(*layers)
