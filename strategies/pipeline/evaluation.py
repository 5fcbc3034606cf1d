"""Evaluation as a pipelined forward (MATH A4): no rank assembles the model to score it.

    accuracy = pipelined_accuracy(strategy, X, y, metrics_comm)

Each dp group scores 1/dp of the test rows, in micro-batches of up to ``rows`` rows. For each
micro-batch, virtual stage s = 0 .. V-1 in turn (the rank at s mod p, chunk s div p) runs its
layers on h_{s-1} and sends h_s on; the last stage counts the correct argmaxes. Forward only,
no graph, on each stage's whole layers (tp shards gathered first), and every message goes
over the metrics communicator (world ranks, counted on no parent), so evaluation never shows
in what training sent. One sum over every rank at the end.
"""
import numpy

import collectives
from collectives.tags import Tag
from engine import Tensor, no_grad
from strategies.grid import Coordinates, world_rank


def pipelined_accuracy(strategy, X, y, metrics_comm, rows=500):
    grid, d = strategy.grid, strategy.grid.degrees
    pp, tp, V = d["pp"], d["tp"], d["pp"] * strategy.chunks
    n = len(X)
    share = slice(grid.dp_rank * n // d["dp"], (grid.dp_rank + 1) * n // d["dp"])
    Xs, ys = X[share], y[share]
    shapes = strategy.executor.shapes if strategy.executor else strategy.boundary_shapes(Tensor(X[:1]))
    modules = strategy.full_modules(metrics_comm)          # tp shards gathered: no tp messages

    def rank_of(s):            # the world rank of virtual stage s in this dp group, same tp rank
        return world_rank(Coordinates(dp=grid.dp_rank, pp=s % pp, tp=grid.tp_rank), pp, tp)

    correct = 0
    with no_grad():
        for start in range(0, len(Xs), rows):
            x, labels = Xs[start:start + rows], ys[start:start + rows]
            h = None
            for s in range(V):
                if s % pp != grid.pp_rank:
                    continue
                if s == 0:
                    h = x
                else:
                    h = numpy.empty((len(x),) + shapes[s - 1], X.dtype)
                    metrics_comm.recv(h, rank_of(s - 1), Tag.ACTIVATION)
                out = modules[s // pp](Tensor(h)).data
                if s == V - 1:
                    if grid.tp_rank == 0:
                        correct += int((out.argmax(axis=1) == labels).sum())
                else:
                    metrics_comm.send(numpy.ascontiguousarray(out), rank_of(s + 1), Tag.ACTIVATION)
    total = collectives.allreduce(metrics_comm, numpy.array([correct], numpy.int64), "tree", "sum", check=False)
    return float(total[0] / n)
