"""Binomial trees: broadcast, reduce, and tree all-reduce = reduce to rank 0 + broadcast.

Number the ranks relative to the root, v = (rank - root) % p. A broadcast halves the
distance every round: the root sends to the rank half-way round (v = 4 for p = 8), then both
of them send a quarter of the way (distance 2), then every holder sends to its neighbour
(distance 1). The number of ranks holding the data doubles each round: ceil(log2 p) rounds.

    p = 8, root 0      distance 4      distance 2          distance 1
                       0 -> 4          0 -> 2, 4 -> 6      0 -> 1, 2 -> 3, 4 -> 5, 6 -> 7

    the tree it draws:           0
                             /   |   \\
                            4    2    1
                           / \\   |
                          6   5  3
                          |
                          7

A rank's parent is v with its lowest set bit cleared (6 = 110b -> 4 = 100b); its children are
v + 2^j for every 2^j below that lowest bit. Reduce is the same tree run backwards: children
send their partial results up and each parent combines them into its own, leaves first.

Cost (alpha latency per message, beta per byte, gamma per byte reduced, n bytes), with
L = ceil(log2 p) rounds, each moving the whole array:

    T_broadcast = L (alpha + n beta)
    T_reduce    = L (alpha + n beta + n gamma)
    T_tree_allreduce = 2 L (alpha + n beta) + L n gamma

log p latency terms: good for small arrays. But the whole array crosses each of the 2L
levels, so for large arrays the ring's 2 (p - 1)/p n beta wins (costmodel.py).

Traffic: in the reduce every rank but the root sends n bytes once; in the broadcast every rank
but the root receives n bytes once; 2 (p - 1) messages in all.
"""
from engine.backend import array_module

from collectives.check import check_same
from collectives.comm import Note
from collectives.guard import collective
from collectives.reduction import Op, combine_into, finish, result_buffer


def _lowest_bit_round(v, p):
    """The round at which relative rank v receives (v > 0), or the first power of 2 >= p (root)."""
    distance = 1
    while distance < p and not v & distance:
        distance *= 2
    return distance


def broadcast_tree(comm, buf, root=0):
    """Binomial broadcast of the flat buffer ``buf`` from ``root``, in place (no check)."""
    p = comm.size
    v = (comm.rank - root) % p
    distance = _lowest_bit_round(v, p)
    if v:  # receive once from the parent: v with its lowest set bit cleared
        comm.recv(buf, (v - distance + root) % p, note=Note("broadcast", distance.bit_length() - 1))
    distance //= 2
    while distance >= 1:  # then pass it on to the children, farthest first
        if v + distance < p:
            comm.send(buf, (v + distance + root) % p,
                      note=Note("broadcast", distance.bit_length() - 1))
        distance //= 2


def reduce_tree(comm, buf, op, root=0):
    """Binomial reduce into the flat ``buf`` at ``root`` (other ranks' buf becomes scratch)."""
    p = comm.size
    v = (comm.rank - root) % p
    incoming = array_module(buf).empty_like(buf)
    distance = 1
    while distance < p:
        if v & distance:  # my subtree is complete: send it to the parent and stop
            comm.send(buf, (v - distance + root) % p,
                      note=Note("reduce", distance.bit_length() - 1))
            return
        if v + distance < p:
            comm.recv(incoming, (v + distance + root) % p,
                      note=Note("reduce", distance.bit_length() - 1))
            combine_into(op, buf, incoming)
        distance *= 2


@collective
def broadcast(comm, x, root=0, *, out=None, check=True):
    """Root's x on every rank. Every rank passes an array of the same shape and dtype
    (like MPI_Bcast's buffer; only the root's contents matter). Returns a new array or ``out``.
    """
    if check:
        check_same(comm, x, f"broadcast root={root}")
    buf = result_buffer(x, out)                                   # (n,)
    broadcast_tree(comm, buf, root)
    return finish(buf, Op.SUM, comm.size, x.shape, out)


@collective
def reduce(comm, x, root=0, op=Op.SUM, *, check=True):
    """x_0 (op) ... (op) x_{p-1} on ``root`` (a new array); None on the other ranks."""
    op = Op(op)
    if check:
        check_same(comm, x, f"reduce root={root} op={op.value}")
    buf = result_buffer(x)                                        # (n,)
    reduce_tree(comm, buf, op, root)
    return finish(buf, op, comm.size, x.shape) if comm.rank == root else None


@collective
def tree_allreduce(comm, x, op=Op.SUM, *, out=None, check=True):
    """All-reduce by a binomial reduce to rank 0 then a binomial broadcast (cost above)."""
    op = Op(op)
    if check:
        check_same(comm, x, f"tree_allreduce op={op.value}")
    buf = result_buffer(x, out)                                   # (n,)
    reduce_tree(comm, buf, op, root=0)
    broadcast_tree(comm, buf, root=0)
    return finish(buf, op, comm.size, x.shape, out)
