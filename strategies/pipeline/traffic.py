"""Bytes one model-parallel rank sends per step, by formula (what its counters must show).

With M micro-batches of b rows, itemsize w, h_s the output of virtual stage s (feature size
|h_s|), this rank's virtual stages s (V in all), t = tp and d = dp degrees:

    pipeline   sum_s [s < V-1] M b |h_s| w          activations forward (Tag.ACTIVATION)
             + sum_s [s > 0]   M b |h_{s-1}| w      gradients backward (Tag.ACTIVATION_GRAD)
    tensor     per Megatron block of a stage (column then row Linear), per micro-batch:
                 R(t, b n_out w)   forward: g all-reduces the row layer's output
               + R(t, b n_in w)    backward: f all-reduces the column layer's input gradient
                                   (not when that input is the data: nothing to send back)
    data       R(d, n_stage)       the stage's gradients, once per step (n_stage: its bytes)

R(p, n) is the ring all-reduce's mean bytes per rank, 2 (p - 1)/p n (collectives/algorithms.py;
0 for p = 1). Evaluation and the record's gathers go over the metrics communicator, which
counts on no parent, so they are not in these counts.
"""
import math

from strategies.tensor_parallel import ColumnParallelLinear, RowParallelLinear
from strategies.traffic import allreduce_bytes


def stage_bytes(strategy):
    """The formula above for ``strategy`` (a ModelParallel rank that has run a step)."""
    ex, grid = strategy.executor, strategy.grid
    M, b, w = strategy.micro_batches, strategy.rows_per_micro, ex.dtype.itemsize
    t, d = grid.degrees["tp"], grid.degrees["dp"]
    total = 0.0
    for chunk, module in enumerate(strategy.modules):
        s = ex.stage_of(chunk)
        if s < ex.virtual - 1:
            total += M * b * math.prod(ex.shapes[s]) * w
        if s > 0:
            total += M * b * math.prod(ex.shapes[s - 1]) * w
        if t > 1:
            data_so_far = s == 0                 # stage 0's input is data: needs no gradient
            for layer in module:
                if isinstance(layer, RowParallelLinear):
                    total += M * allreduce_bytes("ring", t, b * layer.out_features * w)
                elif isinstance(layer, ColumnParallelLinear) and not data_so_far:
                    total += M * allreduce_bytes("ring", t, b * layer.in_features * w)
                data_so_far = data_so_far and not list(layer.parameters())
    if d > 1:
        total += allreduce_bytes("ring", d, sum(p.data.nbytes for p in strategy.parameters()))
    return total
