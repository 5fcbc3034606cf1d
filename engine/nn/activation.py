"""Activation layers (MATH F1: y = f(z)); each is the function of the same name in F."""
from engine import functional as F
from engine.nn.module import Module


class ReLU(Module):
    """f(z) = max(z, 0)."""

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    """f(z) = 1 / (1 + e^-z)."""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    """f(z) = tanh z."""

    def forward(self, x):
        return F.tanh(x)
