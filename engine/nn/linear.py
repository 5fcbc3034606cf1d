"""The affine layer."""
import numpy

from engine import functional as F
from engine.nn.init import fan_in_uniform_
from engine.nn.module import Module, Parameter, check_input


class Linear(Module):
    """z = W x + b  (MATH F1), applied to each row of a batch x (N, in) -> (N, out).

    ``weight`` has shape (out_features, in_features) as in PyTorch; weight and
    bias start U(-1/sqrt(in), 1/sqrt(in)). Cost: 2 N in out flops forward, twice that backward.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=numpy.float32, device="cpu"):
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: in_features and out_features must be >= 1, "
                             f"got {in_features} and {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = fan_in_uniform_(
            Parameter(numpy.zeros((out_features, in_features)), dtype=dtype, device=device),
            in_features)
        self.bias = fan_in_uniform_(
            Parameter(numpy.zeros(out_features), dtype=dtype, device=device), in_features) if bias else None

    def forward(self, x):
        check_input("Linear", x, 1, f"(..., in_features={self.in_features})")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input of shape {x.shape} has {x.shape[-1]} features, "
                             f"the layer expects {self.in_features} (in_features)")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
