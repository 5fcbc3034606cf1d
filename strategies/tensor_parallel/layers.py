"""Linear layers split over the t ranks of a tensor-parallel communicator (Megatron-LM).

z = x W^T + b (MATH F1) with W of shape (out, in). Cut W into t blocks (MATH A4: a layer by
columns; MATH F13: each rank owns and updates its block) in one of two ways:

    ColumnParallelLinear   W_i = W[lo_i:hi_i, :]   rank i computes its outputs z[:, lo_i:hi_i]
                           z_i = f(x) W_i^T + b[lo_i:hi_i]        (f = copy_to_tp; no gather)
    RowParallelLinear      W_i = W[:, lo_i:hi_i]   rank i holds its inputs x[:, lo_i:hi_i]
                           z = g(x_i W_i^T) + b                   (g = reduce_from_tp)

since x W^T = sum_i x[:, lo_i:hi_i] W[:, lo_i:hi_i]^T. A column layer's output shard is
exactly a row layer's input shard, and an elementwise function (ReLU) of a shard is the
shard of the function, so one MLP block is

    x --f--> Column(A) --> ReLU --> Row(B) --g--> z        one all-reduce forward (g),
                                                          one backward (f)

and, with n the bytes of the block's input (= of its output, for a d -> h -> d block), sends
2 x 2 (t - 1)/t n bytes per rank per step (operators.py), whatever the hidden width h.

Blocks: contiguous, near-equal (``shard_bounds``: 127 features on 4 ranks are 31 32 32 32),
so every rank has work; fewer features than ranks is an error, naming the layer. The row
layer's bias is NOT split: it is added once, after the all-reduce, identically on every rank
(adding b_i on each rank before the sum would give the same z, but it is simpler to keep one
b; its gradient, sum over the batch of dL/dz, is the same on every rank, so every rank's
optimiser makes the same update and the copies stay equal).

Cost per rank: 1/t of the layer's weights and of its 2 N in out flops (MATH F1's cost).
"""
from engine import functional as F
from engine.nn.module import Module, Parameter
from strategies.parameter_server.shards import shard_bounds
from strategies.tensor_parallel.operators import copy_to_tp, reduce_from_tp


def feature_bounds(n, comm, layer, what):
    """(lo, hi) of this rank's block of ``n`` features (``what``: "output"/"input"), checked."""
    if n < comm.size:
        raise ValueError(f"tensor parallel: layer {layer} has {n} {what} features, fewer than "
                         f"the {comm.size} tensor-parallel ranks: every rank needs at least one "
                         f"(use a smaller tp, or leave this layer replicated)")
    return shard_bounds(n, comm.size)[comm.rank]


def _parameter(array, like):
    """A Parameter holding a copy of ``array`` (a slice of the full layer's ``like``)."""
    return Parameter(array.copy(), dtype=like.dtype, device=like.device)


class ColumnParallelLinear(Module):
    """Rank i's rows lo:hi of ``full``'s weight and bias: outputs lo:hi of ``full``.

    ``full``: the whole Linear (the same values on every rank); ``name``: how errors call it.
    Keeps ``in_features``, ``out_features`` (of the whole layer) and ``lo``, ``hi``."""

    def __init__(self, full, comm, name="Linear"):
        self.comm, self.name = comm, name
        self.in_features, self.out_features = full.in_features, full.out_features
        self.lo, self.hi = feature_bounds(full.out_features, comm, name, "output")
        self.weight = _parameter(full.weight.data[self.lo:self.hi], full.weight)   # (hi-lo, in)
        self.bias = (None if full.bias is None else
                     _parameter(full.bias.data[self.lo:self.hi], full.bias))       # (hi-lo,)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"ColumnParallelLinear {self.name}: input of shape {x.shape} has "
                             f"{x.shape[-1]} features, the layer expects {self.in_features}")
        return F.linear(copy_to_tp(x, self.comm), self.weight, self.bias)         # (N, hi-lo)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"outputs {self.lo}:{self.hi} of tp={self.comm.size}")


class RowParallelLinear(Module):
    """Rank i's columns lo:hi of ``full``'s weight, and all of its bias: takes inputs lo:hi
    (a column layer's output shard), returns the whole output on every rank."""

    def __init__(self, full, comm, name="Linear"):
        self.comm, self.name = comm, name
        self.in_features, self.out_features = full.in_features, full.out_features
        self.lo, self.hi = feature_bounds(full.in_features, comm, name, "input")
        self.weight = _parameter(full.weight.data[:, self.lo:self.hi], full.weight)  # (out, hi-lo)
        self.bias = None if full.bias is None else _parameter(full.bias.data, full.bias)  # (out,)

    def forward(self, x):
        if x.shape[-1] != self.hi - self.lo:
            raise ValueError(f"RowParallelLinear {self.name}: input of shape {x.shape} has "
                             f"{x.shape[-1]} features, this rank's block expects "
                             f"{self.hi - self.lo} (inputs {self.lo}:{self.hi})")
        z = reduce_from_tp(F.linear(x, self.weight), self.comm)                     # (N, out)
        return z if self.bias is None else z + self.bias     # after the sum: b counted once

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"inputs {self.lo}:{self.hi} of tp={self.comm.size}")
