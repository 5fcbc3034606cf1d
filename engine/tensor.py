"""The Tensor: an array, and the place it came from in the graph.

``Tensor.data`` is a backend array (NumPy, or CuPy on ``device="cuda"``);
``Tensor.grad`` is an array of the same shape (or None) that ``backward()``
fills for leaves that require grad. Every operator below is a call to one op
in ``engine.ops``; the ops hold the math, this class only gives them names.
"""
import math

import numpy

from engine import backend

DEFAULT_DTYPE = numpy.float32


def _is_array(x):
    """A NumPy/CuPy array or NumPy scalar: keeps its dtype (Python numbers default to float32)."""
    return isinstance(x, (numpy.ndarray, numpy.generic)) or type(x).__module__.startswith("cupy")


class Tensor:
    """``Tensor(data, requires_grad=False, dtype=None, device=None)``.

    ``data``: an array, a Python number or nested list, or a Tensor.
    ``dtype``: default float32 for Python floats; arrays keep their dtype
    (a float64 array stays float64; integer labels stay integers).
    ``device``: "cpu" or "cuda"; default: where ``data`` already is (cpu for Python data).

    An array of the right dtype and device is wrapped, not copied (like
    ``torch.from_numpy``): an optimiser step on the tensor changes the array too.
    """

    __array_priority__ = 1000  # numpy_array * tensor -> Tensor.__rmul__, not an object array

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        if isinstance(data, Tensor):
            data = data.data
        device = backend.check_device(device or backend.device_of(data))
        if _is_array(data):
            data = backend.to_device(data, device)
        else:  # Python data: floats default to float32, as in PyTorch
            data = numpy.asarray(data)
            if dtype is None and data.dtype == numpy.float64:
                dtype = DEFAULT_DTYPE
            data = backend.to_device(data, device)
        xp = backend.array_module(data)
        self.data = xp.asarray(data, dtype=dtype)
        self._init_graph(requires_grad)

    def _init_graph(self, requires_grad):
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(f"Tensor: only floating-point tensors can require grad, "
                               f"got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self._ctx = None           # the Function that produced this tensor (None for leaves)
        self._retains_grad = False
        self._grad_hooks = self._post_accumulate_grad_hooks = None  # lists once registered

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        """A Tensor around an op's output array, without conversion or copy."""
        t = cls.__new__(cls)
        if type(array) is numpy.ndarray:  # the common case, without asking the backend
            t.data = array
        else:
            xp = backend.array_module(array)
            t.data = array if isinstance(array, xp.ndarray) else xp.asarray(array)
        t._init_graph(requires_grad)
        return t

    # ---- what it is ----
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)
    # The op (a Function) that produced this tensor, None for a leaf: ``grad_fn.inputs`` are
    # its input tensors and ``grad_fn.backward(g)`` its local chain rule, as in PyTorch.
    grad_fn = property(lambda self: self._ctx)

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def __bool__(self):
        """The truth of a one-element tensor (``if loss < 0.1:``); ambiguous otherwise, as in PyTorch."""
        if self.data.size != 1:
            raise RuntimeError(f"bool(): the truth value of a tensor with {self.data.size} "
                               f"elements is ambiguous (use .any() or .all() on .numpy())")
        return bool(self.data.reshape(()))

    def numpy(self):
        """The data as a NumPy array (no copy on cpu; a host copy from cuda)."""
        if self.requires_grad:
            raise RuntimeError("numpy(): call .detach().numpy() on a tensor that requires grad")
        return backend.to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only a one-element tensor converts to a number, shape {self.shape}")
        return self.data.reshape(()).item()

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor._wrap(self.data)

    def requires_grad_(self, requires_grad=True):
        if not self.is_leaf:
            raise RuntimeError("requires_grad_: only leaf tensors can change requires_grad")
        if requires_grad and self.data.dtype.kind not in "fc":
            raise RuntimeError(f"requires_grad_: only floating-point tensors can require grad, "
                               f"got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward (for teaching and debugging)."""
        self._retains_grad = True

    def register_hook(self, fn):
        """Call ``fn(grad)`` in each backward when dL/d(self) is complete, before it is used; a
        returned array (or Tensor) replaces it. Returns a handle: ``.remove()`` (engine/hooks.py)."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: this tensor does not require grad")
        if self._grad_hooks is None:
            self._grad_hooks = []
        self._grad_hooks.append(fn)
        return hooks.RemovableHandle(self._grad_hooks, fn)

    def register_post_accumulate_grad_hook(self, fn):
        """Call ``fn(self)`` in each backward right after this leaf's ``.grad`` is accumulated."""
        if not self.requires_grad or not self.is_leaf:
            raise RuntimeError("register_post_accumulate_grad_hook: needs a leaf that requires grad")
        if self._post_accumulate_grad_hooks is None:
            self._post_accumulate_grad_hooks = []
        self._post_accumulate_grad_hooks.append(fn)
        return hooks.RemovableHandle(self._post_accumulate_grad_hooks, fn)

    def to(self, device=None, dtype=None):
        """A copy on ``device`` and/or of ``dtype`` (differentiable); self if nothing changes."""
        out = self
        if device is not None and backend.check_device(device) != self.device:
            out = ops.ToDevice.apply(out, device=device)
        if dtype is not None and numpy.dtype(dtype) != out.dtype:
            out = ops.Cast.apply(out, dtype=numpy.dtype(dtype))
        return out

    def backward(self, grad=None, retain_graph=False):
        """Fill ``.grad`` of every leaf this tensor depends on (see engine.autograd.backward)."""
        autograd.backward(self, grad, retain_graph)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        device = ", device='cuda'" if self.device == "cuda" else ""
        return f"Tensor({backend.to_numpy(self.data)!r}{grad}{device})"

    # ---- arithmetic: a + b, a - b = a + (-b), a / b = a * b**-1, dtypes by ops.promote ----
    def __add__(self, other):
        return ops.Add.apply(*ops.promote(self, other))

    def __radd__(self, other):
        return ops.Add.apply(*ops.promote(other, self))

    def __mul__(self, other):
        return ops.Mul.apply(*ops.promote(self, other))

    def __rmul__(self, other):
        return ops.Mul.apply(*ops.promote(other, self))

    def __neg__(self):
        return ops.Neg.apply(self)

    def __sub__(self, other):
        return _subtract(*ops.promote(self, other))

    def __rsub__(self, other):
        return _subtract(*ops.promote(other, self))

    def __truediv__(self, other):
        if ops.is_number(other):  # 1/other once, in double precision; x / 0 is +-inf or nan
            return self * (1.0 / other if other != 0 else math.copysign(math.inf, other))
        return _divide(*ops.promote(self, other, true_division=True))

    def __rtruediv__(self, other):
        return _divide(*ops.promote(other, self, true_division=True))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            raise TypeError("pow: only a scalar exponent is supported, got a Tensor")
        base = self
        if self.dtype.kind in "biu" and (float(exponent) != int(exponent) or exponent < 0):
            base = self.to(dtype=DEFAULT_DTYPE)  # Tensor([4]) ** 0.5 is 2.0, not int 1 (PyTorch)
        return ops.Pow.apply(base, exponent=exponent)

    def __matmul__(self, other):
        return ops.matmul(*ops.promote(self, other))

    def __rmatmul__(self, other):
        return ops.matmul(*ops.promote(other, self))

    # ---- comparisons: boolean tensors, no gradient (as in PyTorch) ----
    __hash__ = object.__hash__  # defining __eq__ would otherwise make tensors unhashable

    def _compare(self, other, name):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(getattr(self.data, name)(other))

    def __eq__(self, other):
        return self._compare(other, "__eq__")

    def __ne__(self, other):
        return self._compare(other, "__ne__")

    def __lt__(self, other):
        return self._compare(other, "__lt__")

    def __le__(self, other):
        return self._compare(other, "__le__")

    def __gt__(self, other):
        return self._compare(other, "__gt__")

    def __ge__(self, other):
        return self._compare(other, "__ge__")

    # ---- elementwise functions ----
    def exp(self):
        return ops.Exp.apply(ops.to_floating(self))

    def log(self):
        return ops.Log.apply(ops.to_floating(self))

    def tanh(self):
        return ops.Tanh.apply(ops.to_floating(self))

    def sigmoid(self):
        return ops.Sigmoid.apply(ops.to_floating(self))

    def relu(self):
        return ops.ReLU.apply(self)

    # ---- reductions ----
    def sum(self, axis=None, keepdims=False):
        return ops.Sum.apply(self, axis=ops.normalize_axis(axis, self.ndim), keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        """The sum over ``axis`` divided by its count: NaN over no entries, as in PyTorch."""
        axis = ops.normalize_axis(axis, self.ndim)
        return self.sum(axis, keepdims) / math.prod(self.shape[a] for a in axis)

    def max(self, axis=None, keepdims=False):
        return ops.Max.apply(self, axis=ops.normalize_axis(axis, self.ndim), keepdims=keepdims)

    def argmax(self, axis=None):
        """Index of the largest entry (no gradient); of the flattened tensor when axis is None."""
        ops.check_reduction("argmax", self.shape, ops.normalize_axis(axis, self.ndim))
        return Tensor._wrap(self.data.argmax(axis=axis))

    # ---- shape ----
    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return ops.Reshape.apply(self, shape=tuple(shape))

    def flatten(self, start_axis=0):
        """Merge the axes from ``start_axis`` on into one."""
        if not 0 <= start_axis < max(self.ndim, 1):
            raise ValueError(f"flatten: start_axis {start_axis} out of range for shape {self.shape}")
        return self.reshape(self.shape[:start_axis] + (-1,))

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return ops.Transpose.apply(self, axes=tuple(axes) or tuple(reversed(range(self.ndim))))

    @property
    def T(self):
        return self.transpose()

    def __getitem__(self, index):
        return ops.GetItem.apply(self, index=ops.normalize_index(index))


def _subtract(a, b):
    ops.check_broadcast("sub", a, b)
    return a + (-b)


def _divide(a, b):
    ops.check_broadcast("div", a, b)
    return a * b ** -1


from engine import autograd, hooks, ops  # noqa: E402  (they build on Tensor; import last)
