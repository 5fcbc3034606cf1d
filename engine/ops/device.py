"""Moving a tensor between devices or dtypes; the gradient moves back the same way."""
from engine import backend
from engine.autograd import Function


class ToDevice(Function):
    """z = a copied to another device;  g is copied back to a's device."""

    def forward(self, a, device):
        self.saved = (backend.device_of(a),)
        return backend.to_device(a, device)

    def backward(self, g):
        return (backend.to_device(g, self.saved[0]),)


class Cast(Function):
    """z = a converted to ``dtype``;  g is converted back to a's dtype."""

    def forward(self, a, dtype):
        self.saved = (a.dtype,)
        return a.astype(dtype)

    def backward(self, g):
        return (g.astype(self.saved[0]),)
