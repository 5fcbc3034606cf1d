"""The differentiable ops, one Function each, forward and local derivative side by side.

- ``elementwise``: Add, Mul, Neg, Pow, Exp, Log, Tanh, Sigmoid, ReLU
- ``reduce``: Sum, Max (mean is a sum times 1/n)
- ``shape``: Reshape, Transpose, GetItem, Concat
- ``matmul``: MatMul (2-D and batched), Affine (x W^T + b, a Linear layer as one op)
- ``conv``: Conv2d, MaxPool2d, AvgPool2d (NCHW, by im2col and window kernels)
- ``device``: ToDevice, Cast
- ``dtypes``: PyTorch's dtype promotion (promote, result_type, to_floating), in one place

Derived ops are written through these (``a - b`` is ``a + (-b)``, ``a / b`` is
``a * b**-1``, ``stack`` is reshape + concat), so each derivative exists once.
"""
from engine.ops.broadcasting import check_broadcast, sum_to_shape
from engine.ops.device import Cast, ToDevice
from engine.ops.elementwise import Add, Exp, Log, Mul, Neg, Pow, ReLU, Sigmoid, Tanh
from engine.ops.dtypes import is_number, promote, result_type, to_floating
from engine.ops.conv import AvgPool2d, Conv2d, MaxPool2d
from engine.ops.matmul import Affine, MatMul, matmul
from engine.ops.reduce import Max, Sum, check_reduction, normalize_axis
from engine.ops.shape import Concat, GetItem, Reshape, Transpose, normalize_index

__all__ = ["check_broadcast", "sum_to_shape", "Cast", "ToDevice", "Add", "Exp", "Log", "Mul", "Neg", "Pow",
           "ReLU", "Sigmoid", "Tanh", "MatMul", "matmul", "Affine", "Conv2d", "MaxPool2d", "AvgPool2d", "Max", "Sum", "normalize_axis",
           "check_reduction", "is_number", "promote", "result_type", "to_floating",
           "Concat", "GetItem", "Reshape", "Transpose", "normalize_index"]
