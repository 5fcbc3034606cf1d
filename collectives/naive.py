"""Naive all-reduce: gather everything on rank 0, reduce there, send the result to everyone.

    p = 4        steps 0..2                  reduce            steps 3..5
                 1 -> 0, 2 -> 0, 3 -> 0      on rank 0         0 -> 1, 0 -> 2, 0 -> 3

The obvious algorithm, and the one to beat. Rank 0's link carries 2 (p - 1) whole arrays,
one after another, while the other links sit idle:

    T_naive = 2 (p - 1) (alpha + n beta) + (p - 1) n gamma

Both terms grow linearly with p. Compare the binomial tree (log p rounds, tree.py) and the
ring (bandwidth term 2 (p - 1)/p n beta, bounded in p, ring.py).

Traffic: rank 0 receives and sends (p - 1) n bytes; every other rank sends and receives n.
"""
from collectives.check import check_same
from collectives.comm import Note
from collectives.gather_scatter import gather
from collectives.guard import collective
from collectives.reduction import Op, combine_into, finish, result_buffer


@collective
def naive_allreduce(comm, x, op=Op.SUM, *, out=None, check=True):
    """All-reduce by gather to rank 0, reduce, and p - 1 sends back (cost above)."""
    op = Op(op)
    if check:
        check_same(comm, x, f"naive_allreduce op={op.value}")
    buf = result_buffer(x, out)                                   # (n,)
    everything = gather(comm, buf, root=0, check=False)          # (p, n) on rank 0, else None
    if comm.rank == 0:
        for rank in range(1, comm.size):
            combine_into(op, buf, everything[rank])
        for rank in range(1, comm.size):
            comm.send(buf, rank, note=Note("broadcast", rank - 1))
    else:
        comm.recv(buf, 0, note=Note("broadcast", comm.rank - 1))
    return finish(buf, op, comm.size, x.shape, out)
