"""mpigrad's engine: one process, one model. A Tensor with reverse-mode autograd
over NumPy (or CuPy) arrays, and PyTorch-like ``nn``, ``optim`` and ``data``.

    from engine import Tensor, no_grad
    import engine.functional as F
    from engine import nn, optim, data
"""
from engine.threads import one_thread_per_rank

one_thread_per_rank()  # before NumPy loads its BLAS: see engine/threads.py

from engine.allocator import keep_freed_memory_unless_told_otherwise  # noqa: E402

keep_freed_memory_unless_told_otherwise()  # large arrays are reused, not page-faulted in again

from engine.autograd import enable_grad, is_grad_enabled, no_grad  # noqa: E402
from engine.gradcheck import gradcheck  # noqa: E402
from engine.random import manual_seed  # noqa: E402
from engine.tensor import Tensor, concat, stack  # noqa: E402
from engine import functional, nn, optim, data, models  # noqa: E402  (submodules: engine.nn etc.)

__all__ = ["Tensor", "concat", "stack", "no_grad", "enable_grad", "is_grad_enabled",
           "manual_seed", "gradcheck", "functional", "nn", "optim", "data", "models"]
