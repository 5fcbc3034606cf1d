"""Dtype promotion: PyTorch's rule, in this one place.

Every binary arithmetic operator (``+ - * / @``) asks :func:`promote` for its two
operands, and every floating-only function (exp, log, tanh, sigmoid, log_softmax,
softmax) asks :func:`to_floating` for its input. The rule, as ``torch.result_type``:

1. Categories rank bool < integer < floating < complex.
2. Operands form three tiers: tensors with dimensions, 0-d tensors, constants. Constants
   are Python numbers and NumPy scalars (as in PyTorch) and, an engine choice, NumPy
   arrays too (PyTorch would read a float64 array as a float64 tensor; here
   ``float32 tensor + numpy array`` stays float32). A constant's dtype is bool, int64,
   float32 (the default dtype) or complex64, by its kind.
3. Within a tier dtypes promote as NumPy does within a category (int32 + int64 = int64,
   float32 + float64 = float64, uint8 + int8 = int16); across categories the higher
   category's dtype wins (int64 + float32 = float32, where NumPy would say float64).
4. A lower tier changes the result only when its category is higher: float32 tensor + 2.5
   stays float32, int32 tensor + 5 stays int32, but int tensor + 0.5 is float32 and
   bool tensor + 1 is int64.
5. True division and floating-only functions turn a bool or integer result into float32.

Casts go through the ``Cast`` op, so gradients flow back in each operand's own dtype
(and never into an integer tensor: they cannot require grad).
"""
import numbers

import numpy

from engine import backend
from engine.ops.device import Cast

DEFAULT_DTYPE = numpy.dtype(numpy.float32)
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
_NUMBER_DTYPES = (numpy.dtype(bool), numpy.dtype(numpy.int64), DEFAULT_DTYPE, numpy.dtype(numpy.complex64))


def is_number(x):
    return isinstance(x, (numbers.Number, numpy.generic))


def _constant_dtype(x):
    """The dtype a constant (not a Tensor) counts as: bool, int64, float32 or complex64."""
    if hasattr(x, "dtype"):  # NumPy scalar or array
        category = _CATEGORY[x.dtype.kind]
    else:  # by type, not numpy.asarray: 2**70 would become an object array
        category = 0 if isinstance(x, bool) else 1 if isinstance(x, numbers.Integral) else \
            2 if isinstance(x, numbers.Real) else 3
    return _NUMBER_DTYPES[category]


def promote_types(a, b):
    """``torch.promote_types``: the higher category's dtype, or NumPy's rule within one."""
    a, b = numpy.dtype(a), numpy.dtype(b)
    ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
    if ca == cb or {ca, cb} == {2, 3}:  # complex64 + float64 = complex128 in both libraries
        return numpy.promote_types(a, b)
    return a if ca > cb else b


def result_type(*operands):
    """The dtype of an arithmetic op on ``operands`` (Tensors or constants), rules 1-4."""
    tiers = [None, None, None]  # tensors with dimensions, 0-d tensors, constants
    for x in operands:
        if isinstance(x, Tensor):
            tier, dtype = (0 if x.ndim else 1), x.dtype
        else:
            tier, dtype = 2, _constant_dtype(x)
        tiers[tier] = dtype if tiers[tier] is None else promote_types(tiers[tier], dtype)
    dims, zero_d, constants = tiers
    return _combine(dims, _combine(zero_d, constants))


def _combine(higher, lower):
    """A lower tier counts only if its category is higher (torch's combine_categories)."""
    if higher is None or lower is None:
        return lower if higher is None else higher
    if _CATEGORY[lower.kind] > _CATEGORY[higher.kind]:
        return promote_types(higher, lower)
    return higher


def floating(dtype):
    """Rule 5: ``dtype`` if floating (or complex), else the default float32."""
    return dtype if dtype.kind in "fc" else DEFAULT_DTYPE


def promote(a, b, true_division=False):
    """``a`` and ``b`` (at least one a Tensor) as two Tensors of their result type, on the
    Tensor's device. Only operands of another dtype are cast (no copy otherwise); a nested
    list is a constant, as a NumPy array."""
    dtype = _common_case(a, b)
    if dtype is None:
        a, b = (x if isinstance(x, Tensor) or is_number(x) or hasattr(x, "dtype") else numpy.asarray(x)
                for x in (a, b))
        dtype = result_type(a, b)
    if true_division:
        dtype = floating(dtype)
    device = (a if isinstance(a, Tensor) else b).device
    return _as_tensor(a, dtype, device), _as_tensor(b, dtype, device)


def _common_case(a, b):
    """result_type without its loop for the two common cases (it is asked for every ``+``):
    two tensors of one dtype, and a floating tensor with a Python int or float. Else None."""
    a_tensor, b_tensor = isinstance(a, Tensor), isinstance(b, Tensor)
    if a_tensor and b_tensor:
        return a.dtype if a.dtype == b.dtype else None
    t, x = (a, b) if a_tensor else (b, a)
    return t.dtype if type(x) in (int, float) and t.dtype.kind == "f" else None


def _as_tensor(x, dtype, device):
    if isinstance(x, Tensor):
        return x if x.dtype == dtype else Cast.apply(x, dtype=dtype)
    return Tensor._wrap(backend.module_for(device).asarray(x, dtype=dtype))


def to_floating(x):
    """``x`` itself if floating, else ``x`` cast to float32: ``sigmoid(int tensor)`` is float32."""
    return x if x.dtype.kind in "fc" else Cast.apply(x, dtype=DEFAULT_DTYPE)


from engine.tensor import Tensor  # noqa: E402  (Tensor uses the ops; import last)
