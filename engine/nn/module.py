"""Module and Parameter: the containers that hold a model's weights.

A Module finds its parameters and sub-modules by looking at its own
attributes, in the order they were assigned (no registration calls): that
order is the order of ``parameters()``, ``state_dict()`` and of the gradient
buckets a data-parallel strategy sends.
"""
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
        """Copy arrays into the parameters (in place). Every key must match, with equal shapes."""
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state_dict]
        unexpected = [k for k in state_dict if k not in params]
        if missing or unexpected:
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, p in params.items():
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else value
            if tuple(value.shape) != p.shape:
                raise ValueError(f"load_state_dict: {name} has shape {p.shape} in the model "
                                 f"but {tuple(value.shape)} in the state dict")
            p.data[...] = backend.to_device(value, p.device)

    def __repr__(self):
        lines = [f"  ({name}): {child!r}".replace("\n", "\n  ") for name, child in self.named_children()]
        inner = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({inner})"
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"

    def extra_repr(self):
        return ""
