"""Gradient clipping by global norm (MATH A8: keep steps stable)."""
import math

from engine import backend
from engine.tensor import Tensor


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale all gradients together so that their joint norm is at most ``max_norm``.

    total = (sum_p ||g_p||^q)^(1/q)  (q = norm_type; max_p max|g_p| for q = inf);
    every g_p is multiplied in place by min(1, max_norm / (total + 1e-6)), as in
    PyTorch. Returns ``total`` (before clipping) as a 0-d Tensor.
    """
    parameters = [parameters] if isinstance(parameters, Tensor) else parameters
    grads = [p.grad for p in parameters if p.grad is not None]
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    if not grads:
        return Tensor(0.0)
    xp = backend.array_module(grads[0])
    if math.isinf(norm_type):
        total = max(float(xp.abs(g).max()) for g in grads)
    else:
        total = sum(float((xp.abs(g.astype(xp.float64)) ** norm_type).sum()) for g in grads) ** (1 / norm_type)
    scale = min(1.0, max_norm / (total + 1e-6))
    if scale < 1.0:
        for g in grads:
            g *= g.dtype.type(scale)
    return Tensor(total, dtype=grads[0].dtype)
