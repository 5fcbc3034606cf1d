"""Recursive-doubling all-reduce, for any number of ranks.

Power of two first. In round k every rank swaps its whole partial result with the rank whose
number differs in bit k (partner = rank XOR 2^k) and combines the two. After round k each
rank holds the reduction over a block of 2^(k+1) ranks; after log2 p rounds, over all:

    p = 4         round 0 (distance 1)        round 1 (distance 2)
                  0 <-> 1,  2 <-> 3           0 <-> 2,  1 <-> 3
    rank 0 holds  x0+x1                       (x0+x1)+(x2+x3)
    rank 2 holds  x2+x3                       (x2+x3)+(x0+x1)   (same bits: + is commutative)

Any p: fold the extra ranks in first. Let q be the largest power of two <= p and
extra = p - q. Among the first 2 * extra ranks, each even rank sends its x to the odd rank
above it and sits out; the q remaining ranks run the rounds above under new numbers; at the
end each odd rank sends the result back down to its even partner:

    p = 6, q = 4, extra = 2
    fold         0 -> 1,  2 -> 3                 (ranks 0 and 2 sit out)
    new number   rank 1 -> 0, rank 3 -> 1, rank 4 -> 2, rank 5 -> 3
    rounds       as for p = 4 on ranks 1, 3, 4, 5
    unfold       1 -> 0,  3 -> 2

    new = rank // 2 for odd rank < 2 extra,   rank - extra for rank >= 2 extra
    old = 2 new + 1 for new < extra,          new + extra otherwise

Cost (alpha latency, beta per byte, gamma per byte reduced, n bytes):

    T_rd = log2 q (alpha + n beta + n gamma)  [ + 2 (alpha + n beta) + n gamma  when p != q ]

Fewest rounds of all (no reduce-then-broadcast), so the best for small arrays; but every
round moves the whole array, so for large ones the ring is better (costmodel.py).

Traffic per rank: log2 q messages of n bytes sent and received by the q active ranks, plus
one more each way for the ranks that took part in the fold.
"""
from engine.backend import array_module

from collectives.check import check_same
from collectives.comm import Note
from collectives.guard import collective
from collectives.reduction import Op, combine_into, finish, result_buffer


@collective
def recursive_doubling_allreduce(comm, x, op=Op.SUM, *, out=None, check=True):
    """All-reduce by recursive doubling with the fold for non-powers of two (see above)."""
    op = Op(op)
    if check:
        check_same(comm, x, f"recursive_doubling_allreduce op={op.value}")
    buf = result_buffer(x, out)                                   # (n,)
    incoming = array_module(buf).empty_like(buf)
    rank, p = comm.rank, comm.size
    q = 1 << (p.bit_length() - 1)  # largest power of two <= p
    extra = p - q

    if rank < 2 * extra and rank % 2 == 0:  # fold: hand my x to rank + 1, wait for the result
        comm.send(buf, rank + 1, note=Note("fold", 0))
        comm.recv(buf, rank + 1, note=Note("unfold", 0))
        return finish(buf, op, p, x.shape, out)
    if rank < 2 * extra:
        comm.recv(incoming, rank - 1, note=Note("fold", 0))
        combine_into(op, buf, incoming)

    new = rank // 2 if rank < 2 * extra else rank - extra
    distance = 1
    while distance < q:
        partner_new = new ^ distance
        partner = 2 * partner_new + 1 if partner_new < extra else partner_new + extra
        comm.sendrecv(buf, partner, incoming, partner,
                      note=Note("doubling", distance.bit_length() - 1))
        combine_into(op, buf, incoming)
        distance *= 2

    if rank < 2 * extra:  # unfold: give the result back to the even rank that sat out
        comm.send(buf, rank - 1, note=Note("unfold", 0))
    return finish(buf, op, p, x.shape, out)
