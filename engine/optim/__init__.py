"""Optimisers (``engine.optim``), with PyTorch's names and update rules (MATH F7)."""
from engine.optim.adam import Adam
from engine.optim.optimizer import Optimizer
from engine.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam"]
