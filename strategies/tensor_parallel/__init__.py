"""Tensor parallelism (Megatron-LM): each Linear of an MLP block split over the tp ranks.

    sharded = shard_sequential(model, grid.tp)     # (column, row) pairs, the rest replicated
    opt = optim.SGD(sharded.parameters(), lr)      # each rank updates its own shard (MATH F13)
    loss = F.cross_entropy(sharded(x), y); loss.backward(); opt.step()
    whole = gather_sequential(sharded, grid.tp)    # the full model, for evaluation or saving

Every tp rank sees the same batch; one block (column -> ReLU -> row) costs one all-reduce of
its output forward and one of its input's gradient backward (MATH A4: a layer by columns).

Table of contents (one concept per module):

    operators.py   copy_to_tp (f) and reduce_from_tp (g): the conjugate all-reduce ops
    layers.py      ColumnParallelLinear, RowParallelLinear: a Linear's block of rows / columns
    sharding.py    shard_sequential, gather_sequential: a whole Sequential to shards and back
"""
from strategies.tensor_parallel.layers import ColumnParallelLinear, RowParallelLinear
from strategies.tensor_parallel.operators import copy_to_tp, reduce_from_tp
from strategies.tensor_parallel.sharding import gather_sequential, shard_sequential

__all__ = ["copy_to_tp", "reduce_from_tp", "ColumnParallelLinear", "RowParallelLinear",
           "shard_sequential", "gather_sequential"]
