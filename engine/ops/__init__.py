"""The differentiable ops, one Function each, forward and local derivative side by side.

- ``elementwise``: Add, Mul, Neg, Pow, Exp, Log, Tanh, Sigmoid, ReLU
- ``reduce``: Sum, Max (mean is a sum times 1/n)
- ``shape``: Reshape, Transpose, GetItem, Concat
- ``matmul``: MatMul (2-D and batched)
- ``device``: ToDevice, Cast

Derived ops are written through these (``a - b`` is ``a + (-b)``, ``a / b`` is
``a * b**-1``, ``stack`` is reshape + concat), so each derivative exists once.
"""
from engine.ops.broadcasting import check_broadcast, sum_to_shape
from engine.ops.device import Cast, ToDevice
from engine.ops.elementwise import Add, Exp, Log, Mul, Neg, Pow, ReLU, Sigmoid, Tanh
from engine.ops.matmul import MatMul, matmul
from engine.ops.reduce import Max, Sum, normalize_axis
from engine.ops.shape import Concat, GetItem, Reshape, Transpose, normalize_index

__all__ = ["check_broadcast", "sum_to_shape", "Cast", "ToDevice", "Add", "Exp", "Log", "Mul", "Neg", "Pow",
           "ReLU", "Sigmoid", "Tanh", "MatMul", "matmul", "Max", "Sum", "normalize_axis",
           "Concat", "GetItem", "Reshape", "Transpose", "normalize_index"]
