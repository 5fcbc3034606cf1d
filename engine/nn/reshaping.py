"""Layers that reshape or mask without parameters."""
from engine import functional as F
from engine.nn.module import Module


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...): keeps the batch axis (``start_dim=1``)."""

    def __init__(self, start_dim=1):
        self.start_dim = start_dim

    def forward(self, x):
        return x.flatten(self.start_dim)


class Dropout(Module):
    """Inverted dropout with probability p while training; the identity in eval()."""

    def __init__(self, p=0.5):
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: probability p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"
