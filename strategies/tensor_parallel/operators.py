"""The two conjugate operators of tensor parallelism (Megatron-LM's f and g), over ``comm``.

A layer split by columns over the t ranks of ``comm`` (MATH A4: "a layer by columns") needs
its input x on every rank, and a layer split by rows leaves each rank a partial sum z_i of
its output. Two autograd ops mark where the ranks meet; each is the other's transpose:

    copy_to_tp      "f"   forward   y = x                    (x is already on every rank)
                          backward  dL/dx = sum_i dL/dx_i     (each rank's share of dL/dx)
    reduce_from_tp  "g"   forward   z = sum_i z_i             (the partial products added)
                          backward  dL/dz_i = dL/dz           (z feeds every z_i with weight 1)

Why f's backward sums: x feeds the t shards of the column layer, one on each rank, so by the
chain rule (MATH F6: gradients arriving along several paths add) its gradient is the sum of
the t shards' contributions. Why g's backward is the identity: dz/dz_i = 1.

Cost: each sum is one ring all-reduce of the n bytes of the activation (forward: the layer's
output, backward: the gradient of its input), which sends per rank, on average,

    2 (t - 1)/t n bytes      in 2 (t - 1) messages     (strategies/traffic.py allreduce_bytes)

exactly that when t divides the element count (collectives/ring.py gives the exact count per
rank otherwise). Nothing is sent when t = 1, and the counters on ``comm`` (rolled up into the
communicators it was split from) are the record of it: no counter of our own.

Every rank must run the same ops in the same order (SPMD): the graph is the same on every
rank, so backward walks it in the same order and the all-reduces match up.
"""
import collectives
from engine.autograd import Function


def _allreduce_sum(array, comm):
    """sum over the ranks of ``comm`` of ``array`` (a new array); no message when t = 1."""
    if comm.size == 1:
        return array
    # check=False: a mismatch would be a bug of the layers, and the check costs a round trip
    return collectives.allreduce(comm, array, "ring", "sum", check=False)


class CopyToTP(Function):
    """f: y = x;  dL/dx = all-reduce(sum) of dL/dy over ``comm``."""

    def forward(self, x, comm):
        return x

    def backward(self, g):
        return (_allreduce_sum(g, self.options["comm"]),)


class ReduceFromTP(Function):
    """g: z = all-reduce(sum) of z_i over ``comm``;  dL/dz_i = dL/dz."""

    def forward(self, z, comm):
        return _allreduce_sum(z, comm)

    def backward(self, g):
        return (g,)


def copy_to_tp(x, comm):
    """f: the identity forward, the sum over ``comm`` of the gradient backward."""
    return CopyToTP.apply(x, comm=comm)


def reduce_from_tp(x, comm):
    """g: the sum over ``comm`` forward, the identity backward."""
    return ReduceFromTP.apply(x, comm=comm)
