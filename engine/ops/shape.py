"""Ops that move entries around without changing them; their backward moves g back."""
import numpy

from engine import backend
from engine.autograd import Function


def normalize_index(index):
    """An index with Tensors replaced by their arrays and lists by integer arrays."""
    if isinstance(index, tuple):
        return tuple(normalize_index(i) for i in index)
    if hasattr(index, "data") and hasattr(index, "requires_grad"):  # a Tensor
        return index.data
    if isinstance(index, list):  # [] would be a float64 array, not an index: make it int64
        return numpy.asarray(index, dtype=None if index else numpy.int64)
    return index


def _has_array(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "shape") and getattr(i, "ndim", 0) > 0 for i in items)


class Reshape(Function):
    """z = a viewed with a new shape;  g is reshaped back."""

    def forward(self, a, shape):
        self.saved = (a.shape,)
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape shape {a.shape} ({a.size} entries) "
                             f"into {shape}") from None

    def backward(self, g):
        return (g.reshape(self.saved[0]),)


class Transpose(Function):
    """z = a with its axes permuted;  g is permuted back by the inverse permutation."""

    def forward(self, a, axes):
        n = a.ndim
        if len(axes) != n or sorted(x % n for x in axes if -n <= x < n) != list(range(n)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the axes of "
                             f"shape {a.shape}")
        self.saved = (tuple(x % n for x in axes),)
        return a.transpose(axes)

    def backward(self, g):
        return (g.transpose(numpy.argsort(self.saved[0])),)


class GetItem(Function):
    """z = a[index];  g goes back to the entries it came from.

    An entry picked twice by integer-array indexing (``a[[0, 0]]``) gets both
    gradients: ``add.at`` accumulates where plain assignment would overwrite.
    """

    def forward(self, a, index):
        self.saved = (a.shape, a.dtype)
        try:
            return a[index]
        except IndexError as exc:
            raise IndexError(f"getitem: index {index!r} into shape {a.shape}: {exc}") from None

    def backward(self, g):
        shape, dtype = self.saved
        xp = backend.array_module(g)
        index = self.options["index"]
        grad = xp.zeros(shape, dtype=dtype)
        if _has_array(index):
            xp.add.at(grad, index, g)
        else:
            grad[index] = g
        return (grad,)


class Concat(Function):
    """z = [a_1, a_2, ...] joined along ``axis``;  g is split back at the same offsets."""

    def forward(self, *arrays, axis):
        if not arrays:
            raise ValueError("concat: expected a non-empty list of tensors")
        xp = backend.array_module(arrays[0])
        try:
            z = xp.concatenate(arrays, axis=axis)
        except (ValueError, numpy.exceptions.AxisError) as exc:
            raise ValueError(f"concat: shapes {[a.shape for a in arrays]} along axis {axis}: "
                             f"{exc}") from None
        self.saved = (numpy.cumsum([a.shape[axis] for a in arrays])[:-1],)
        return z

    def backward(self, g):
        xp = backend.array_module(g)
        return tuple(xp.split(g, self.saved[0].tolist(), axis=self.options["axis"]))


def concat(tensors, axis=0):
    """Join tensors along an existing axis (``torch.cat``)."""
    return Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    """Join tensors along a new axis: concat of each with a unit axis inserted."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    ndim = tensors[0].ndim
    axis = axis + ndim + 1 if axis < 0 else axis
    if not 0 <= axis <= ndim:
        raise ValueError(f"stack: axis {axis} out of range for {ndim}-D tensors")
    return concat([t.reshape(t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors], axis)
