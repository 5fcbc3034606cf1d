"""Reduction operators, and the result buffer every collective reduces into.

An all-reduce computes, element by element,   y = x_0 (op) x_1 (op) ... (op) x_{p-1}
for an associative, commutative op:

    Op.SUM   y = sum_k x_k                       np.add
    Op.MEAN  y = (1/p) sum_k x_k                 np.add, then divide once at the end (MATH F10)
    Op.MAX   y = max_k x_k                       np.maximum
    Op.MIN   y = min_k x_k                       np.minimum

``op`` may be given as ``Op.SUM`` or as its name ``"sum"``. Integer sums wrap around like NumPy's
(and MPI's). The mean of an integer array is float64; of a float or complex array, its own dtype.

Inputs are never modified: ``result_buffer`` makes the one flat copy an algorithm works in
(or uses ``out=``, which may be the input itself for an in-place all-reduce).
"""
import enum

from engine.backend import array_module


class Op(str, enum.Enum):
    SUM = "sum"
    MEAN = "mean"
    MAX = "max"
    MIN = "min"


def combine_into(op, acc, incoming):
    """acc <- acc (op) incoming, in place, no allocation (the inner step of every algorithm)."""
    xp = array_module(acc)
    ufunc = {Op.SUM: xp.add, Op.MEAN: xp.add, Op.MAX: xp.maximum, Op.MIN: xp.minimum}[op]
    ufunc(acc, incoming, out=acc)


def check_numeric(x):
    """Collectives carry numbers: integers, floats, complex (not bool, str or object)."""
    if x.dtype.kind not in "iufc":
        raise TypeError(f"collectives reduce numeric arrays, got dtype {x.dtype}")
    return x


def result_buffer(x, out=None):
    """A C-contiguous flat buffer in x's dtype holding a copy of x: ``out`` itself when usable."""
    xp = array_module(x)
    check_numeric(x)
    if out is not None and out.dtype == x.dtype and out.flags.c_contiguous:
        if out.shape != x.shape:
            raise ValueError(f"out has shape {out.shape}, the input {x.shape}")
        if out is not x:
            out[...] = x
        return out.reshape(-1)  # a view: reducing into it writes into out
    return xp.array(x, copy=True, order="C").reshape(-1)  # (n,)


def finish(buf, op, p, shape, out=None):
    """Turn the reduced flat buffer into the result: divide for MEAN, reshape, honour ``out``."""
    result = buf.reshape(shape)
    if op is Op.MEAN:
        if result.dtype.kind in "fc":
            array_module(result).true_divide(result, p, out=result)
        else:
            result = result / p  # integer mean -> float64
    if out is None:
        return result
    if not array_module(out).may_share_memory(result, out):  # out was not usable as work buffer
        out[...] = result
    return out
