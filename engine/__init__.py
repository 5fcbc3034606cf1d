"""mpigrad's engine: one process, one model. A Tensor with reverse-mode autograd
over NumPy (or CuPy) arrays, and PyTorch-like ``nn``, ``optim`` and ``data``.

    from engine import Tensor, no_grad
    import engine.functional as F
    from engine import nn, optim, data

Importing it changes nothing process-wide: entry points call
``engine.process.configure_process()`` for thread counts and malloc.
"""
from engine.autograd import enable_grad, is_grad_enabled, no_grad
from engine.gradcheck import gradcheck
from engine.random import manual_seed
from engine.tensor import Tensor
from engine.ops.shape import concat, stack
from engine import functional, nn, optim, data, models  # submodules: engine.nn etc.

__all__ = ["Tensor", "concat", "stack", "no_grad", "enable_grad", "is_grad_enabled",
           "manual_seed", "gradcheck", "functional", "nn", "optim", "data", "models"]
