"""Collectives written by hand on point-to-point messages, run under mpirun or in threads.

    comm = collectives.world()                        # under mpirun: one rank per process
    y = collectives.allreduce(comm, x, algorithm="ring", op="mean")

    collectives.spawn(lambda comm: collectives.allreduce(comm, x), world_size=4)   # in threads

    y = collectives.allreduce(comm, x, algorithm="auto")   # the cost model picks (algorithms.py)
    status = comm.recv(buf, collectives.ANY_SOURCE, collectives.Tag.GRADIENT)   # status.source
    comm.split(color, name="dp").traffic()                 # {"dp": {...}}; also counted on comm
    collectives.set_timeout(60)    # a rank stuck 60 s in one MPI call aborts the job (watchdog.py)

Table of contents (one concept per module):

    comm.py                the point-to-point interface: send/recv/irecv/probe, Status, Request
    tags.py                Tag: every message tag by name
    counters.py            counters of messages and bytes, rolled up into parent communicators
    mpi_world.py           MPIComm: the interface on mpi4py's COMM_WORLD
    inprocess.py           ThreadComm and spawn: an in-process world of threads
    mailbox.py             its mailboxes: MPI's matching of messages to receives, deadlock errors
    trace.py               opt-in record of every message, step tables
    reduction.py, chunks.py reduction operators; how n elements are cut into p chunks
    check.py               every rank called the same collective on the same array?
    guard.py               @collective: array type, byte order, root, one thread per comm
    watchdog.py            set_timeout: abort the job when a rank makes no progress
    gather_scatter.py      gather, scatter (linear)
    tree.py                broadcast, reduce (binomial tree), tree_allreduce
    naive.py               naive_allreduce
    recursive_doubling.py  recursive_doubling_allreduce
    ring.py                reduce_scatter, all_gather, ring_allreduce
    mpi_library.py         mpi_allreduce: the MPI library's own, the reference
    algorithms.py          ALGORITHMS: each all-reduce's function, time and traffic; "auto"
    allreduce.py           allreduce(..., algorithm=...)
    bucketed.py            bucketed_allreduce (MATH A6: merge small messages)
    costmodel.py           LinkModel, ping-pong and loaded-latency measurements
"""
from collectives.algorithms import ALGORITHMS, Algorithm, choose, get_algorithm
from collectives.allreduce import allreduce
from collectives.bucketed import bucketed_allreduce, plan_buckets
from collectives.comm import ANY_SOURCE, ANY_TAG, Comm, Note, Request, Status
from collectives.counters import Counters
from collectives.gather_scatter import gather, scatter
from collectives.mpi_library import mpi_allreduce
from collectives.naive import naive_allreduce
from collectives.reduction import Op
from collectives.recursive_doubling import recursive_doubling_allreduce
from collectives.ring import all_gather, reduce_scatter, ring_allreduce
from collectives.inprocess import RankError, spawn
from collectives.mailbox import DeadlockError, RankExitedError
from collectives.tags import Tag
from collectives.trace import Trace
from collectives.tree import broadcast, reduce, tree_allreduce
from collectives.mpi_world import MPIComm, world
from collectives.watchdog import get_timeout, set_timeout

__all__ = [
    "ALGORITHMS", "ANY_SOURCE", "ANY_TAG", "Algorithm", "Comm", "Counters", "DeadlockError",
    "MPIComm", "Note", "Op", "RankError", "RankExitedError", "Request", "Status", "Tag", "Trace",
    "all_gather", "allreduce", "broadcast", "bucketed_allreduce", "choose", "gather",
    "get_algorithm", "get_timeout", "mpi_allreduce", "naive_allreduce", "plan_buckets",
    "recursive_doubling_allreduce", "reduce", "reduce_scatter", "ring_allreduce", "scatter",
    "set_timeout", "spawn", "tree_allreduce", "world",
]
