"""Collectives written by hand on point-to-point messages, run under mpirun or in threads.

    comm = collectives.world()                        # under mpirun: one rank per process
    y = collectives.allreduce(comm, x, algorithm="ring", op="mean")

    collectives.spawn(lambda comm: collectives.allreduce(comm, x), world_size=4)   # in threads

Table of contents (one concept per module):

    comm.py                the point-to-point interface, counters of messages and bytes
    mpi_world.py           MPIComm: the interface on mpi4py's COMM_WORLD
    inprocess.py           ThreadComm and spawn: an in-process world of threads
    trace.py               opt-in record of every message, step tables
    reduction.py, chunks.py reduction operators; how n elements are cut into p chunks
    check.py               every rank called the same collective on the same array?
    gather_scatter.py      gather, scatter (linear)
    tree.py                broadcast, reduce (binomial tree), tree_allreduce
    naive.py               naive_allreduce
    recursive_doubling.py  recursive_doubling_allreduce
    ring.py                reduce_scatter, all_gather, ring_allreduce
    allreduce.py           allreduce(..., algorithm=...), the "mpi" reference
    bucketed.py            bucketed_allreduce (MATH A6: merge small messages)
    costmodel.py           alpha-beta predictions, ping-pong measurement
"""
from collectives.allreduce import ALGORITHMS, allreduce, get_algorithm, mpi_allreduce
from collectives.bucketed import bucketed_allreduce, plan_buckets
from collectives.comm import Comm, Counters, Note
from collectives.gather_scatter import gather, scatter
from collectives.naive import naive_allreduce
from collectives.reduction import Op
from collectives.recursive_doubling import recursive_doubling_allreduce
from collectives.ring import all_gather, reduce_scatter, ring_allreduce
from collectives.inprocess import DeadlockError, RankError, RankExitedError, spawn
from collectives.trace import Trace
from collectives.tree import broadcast, reduce, tree_allreduce
from collectives.mpi_world import MPIComm, world

__all__ = [
    "ALGORITHMS", "Comm", "Counters", "DeadlockError", "MPIComm", "Note", "Op", "RankError",
    "RankExitedError", "Trace", "all_gather", "allreduce", "broadcast", "bucketed_allreduce",
    "gather", "get_algorithm", "mpi_allreduce", "naive_allreduce", "plan_buckets", "recursive_doubling_allreduce",
    "reduce", "reduce_scatter", "ring_allreduce", "scatter", "spawn", "tree_allreduce", "world",
]
