"""Gather and scatter, the linear way: the root talks to every other rank in turn.

    gather:   rank k's x  ----->  root's out[k]         (root receives p - 1 messages)
    scatter:  root's x[k] ----->  rank k                (root sends p - 1 messages)

    p = 4, root 0      step 0     step 1     step 2
    gather             1 -> 0     2 -> 0     3 -> 0
    scatter            0 -> 1     0 -> 2     0 -> 3

The root's link carries everything, one message after another, so with n the bytes of one
rank's block:

    T_gather = T_scatter = (p - 1) (alpha + n beta)

They are the two halves of the naive all-reduce (naive.py); a binomial tree would cut the
latency term to log2 p alpha (tree.py does so for broadcast and reduce) but not the
(p - 1) n beta that must reach the root anyway.
"""
from engine.backend import array_module

from collectives.check import check_same
from collectives.comm import Note
from collectives.guard import collective


@collective
def gather(comm, x, root=0, *, check=True):
    """Every rank's x stacked in rank order on ``root``: shape (p, *x.shape); None elsewhere."""
    if check:
        check_same(comm, x, f"gather root={root}")
    xp = array_module(x)
    if comm.rank != root:
        step = (comm.rank - root) % comm.size - 1  # the root hears from root+1 first
        comm.send(xp.ascontiguousarray(x), root, note=Note("gather", step))
        return None
    stacked = xp.empty((comm.size,) + x.shape, x.dtype)          # (p, *x.shape)
    stacked[root] = x
    for step in range(comm.size - 1):
        source = (root + step + 1) % comm.size
        comm.recv(stacked[source], source, note=Note("gather", step))
    return stacked


@collective
def scatter(comm, x, root=0, *, check=True):
    """Block ``rank`` of the root's x, whose shape is (p, *block): returns a new (*block) array.

    As with MPI_Scatter, every rank passes an array of that same shape and dtype (only the
    root's contents are read), so that every rank knows the size of what it receives.
    """
    if check:
        check_same(comm, x, f"scatter root={root}")
    if x.shape[:1] != (comm.size,):
        raise ValueError(f"scatter needs an array of shape (p={comm.size}, ...), got {x.shape}")
    xp = array_module(x)
    if comm.rank != root:
        block = xp.empty(x.shape[1:], x.dtype)
        comm.recv(block, root, note=Note("scatter", (comm.rank - root) % comm.size - 1))
        return block
    blocks = xp.ascontiguousarray(x)
    for step in range(comm.size - 1):
        dest = (root + step + 1) % comm.size
        comm.send(blocks[dest], dest, note=Note("scatter", step))
    return blocks[root].copy()
