"""Module and Parameter: the containers that hold a model's weights.

A Module finds its parameters and sub-modules by looking at its own
attributes, in the order they were assigned (no registration calls): that
order is the order of ``parameters()``, ``state_dict()`` and of the gradient
buckets a data-parallel strategy sends.
"""
import numpy

from engine import backend
from engine.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimiser updates (requires grad by default)."""

    def __init__(self, data, requires_grad=True, dtype=None, device=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, device=device)


class Module:
    """Base class of layers and models: subclasses set attributes in ``__init__``
    and define ``forward``; ``module(x)`` calls ``forward(x)``."""

    training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __setattr__(self, name, value):
        # Sub-modules are found among the attributes, not inside lists: a list of layers
        # would silently train nothing (its parameters unseen by parameters() and optimisers).
        if isinstance(value, (list, tuple)) and any(isinstance(v, Module) for v in value):
            raise TypeError(f"{type(self).__name__}.{name}: a {type(value).__name__} of Modules "
                            f"hides their parameters; use nn.ModuleList([...]) instead")
        super().__setattr__(name, value)

    def named_children(self):
        """(name, sub-module) pairs, in assignment order."""
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Module)]

    def children(self):
        return [m for _, m in self.named_children()]

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs: own parameters, then each child's, recursively.
        A parameter shared by two layers (tied weights) is listed once, under its first name."""
        out, seen = [], set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((name, p))
        return out

    def _named_parameters(self, prefix):
        out = [(prefix + k, v) for k, v in vars(self).items() if isinstance(v, Parameter)]
        for name, child in self.named_children():
            out.extend(child._named_parameters(prefix=f"{prefix}{name}."))
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def modules(self):
        """This module and every module below it, depth first."""
        out = [self]
        for child in self.children():
            out.extend(child.modules())
        return out

    def zero_grad(self):
        """Drop every parameter's gradient (set to None, as PyTorch does by default)."""
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move every parameter (and its gradient) to ``device``, in place; returns self."""
        for p in self.parameters():
            p.data = backend.to_device(p.data, device)
            if p.grad is not None:
                p.grad = backend.to_device(p.grad, device)
        return self

    def state_dict(self):
        """{dotted name: NumPy copy of the parameter}, in ``named_parameters`` order."""
        return {name: backend.to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict):
        """Copy arrays (or Tensors, or nested lists of numbers) into the parameters, in place.

        Every key must match, with equal shapes; all are checked before anything is copied,
        so a bad dict leaves the model untouched. Values of another dtype are cast."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"load_state_dict: expected a dict of arrays, got {type(state_dict).__name__}")
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        values = {name: _as_array(name, state_dict[name], p) for name, p in params.items()}
        for name, p in params.items():
            p.data[...] = backend.to_device(values[name], p.device)

    def __repr__(self):
        lines = [f"  ({name}): {child!r}".replace("\n", "\n  ") for name, child in self.named_children()]
        inner = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({inner})"
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"

    def extra_repr(self):
        return ""


def check_input(layer, x, min_ndim, expected):
    """Raise a clear error unless ``x`` is a Tensor with at least ``min_ndim`` axes. As in
    PyTorch a NumPy array is refused (TypeError), not wrapped: wrap it with Tensor(x)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer}: expected a Tensor input {expected}, got {type(x).__name__}"
                        f"{' of shape ' + str(x.shape) if hasattr(x, 'shape') else ''} (wrap it: Tensor(x))")
    if x.ndim < min_ndim:
        raise ValueError(f"{layer}: expected an input {expected}, got shape {x.shape}")


def _as_array(name, value, param):
    """``value`` as an array of ``param``'s shape, or an error naming ``name`` and both shapes."""
    value = value.data if isinstance(value, Tensor) else value
    if not hasattr(value, "shape"):
        try:
            value = numpy.asarray(value)
        except ValueError as exc:  # a ragged nested list
            raise TypeError(f"load_state_dict: {name}: cannot read {type(value).__name__} as an array "
                            f"of shape {param.shape}: {exc}") from exc
    if value.dtype.kind not in "biuf":
        raise TypeError(f"load_state_dict: {name}: expected numbers (an array of shape {param.shape}), "
                        f"got dtype {value.dtype} from {type(value).__name__}")
    if tuple(value.shape) != param.shape:
        raise ValueError(f"load_state_dict: {name} has shape {param.shape} in the model "
                         f"but {tuple(value.shape)} in the state dict")
    return value
