"""Gradients of broadcast operands.

When ``a`` of shape (3, 1) meets ``b`` of shape (4,), NumPy broadcasts both to
(3, 4). Each entry of ``a`` was used 4 times, so its gradient is the sum of
the 4 gradients it received: summing ``grad`` over the broadcast axes brings
it back to the operand's shape.
"""
import numpy


def sum_to_shape(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    grad = grad.sum(axis=axes, keepdims=True) if axes else grad
    return grad.reshape(shape)


def check_broadcast(op, a, b):
    """Raise the ValueError below unless the shapes of ``a`` and ``b`` broadcast."""
    try:
        numpy.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise broadcast_error(op, a, b) from None


def broadcast_error(op, a, b):
    """The ValueError for operands whose shapes do not broadcast."""
    return ValueError(f"{op}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast")
