"""How many bytes a strategy sends, by formula: the numbers the measured counters must match.

Mean bytes SENT per rank by one all-reduce of an n-byte array on p ranks (every algorithm
in collectives/, counted the way ``comm.counters`` counts: payload only):

    naive                2 (p-1)/p n     rank 0 sends (p-1) n, every other rank n
    tree                 2 (p-1)/p n     the reduce sends p-1 arrays, the broadcast p-1 more
    ring                 2 (p-1)/p n     p-1 chunks in the reduce-scatter, p-1 in the all-gather
    recursive-doubling   (q log2 q + 2 e)/p n    q = largest power of 2 <= p, e = p - q folded ranks
    mpi                  not counted (the library moves the bytes; our counters never see them)

naive, tree and ring move the same total 2 (p-1) n; they differ in how it is spread over
ranks and steps (time), not in volume. The mean is linear in n, so bucketing changes nothing:
the buckets' bytes add up to the formula for the whole gradient.
Per training step, with n = (number of parameters) x (bytes per element):

    DataParallel    allreduce_bytes(algorithm, p, n)            every step          (MATH F10)
    LocalSGD        allreduce_bytes(algorithm, p, n) / H        once every H steps  (MATH F11)
    Gossip (ring)   d n,  d = number of distinct neighbours (2 for p > 2, 1 for p = 2)

With ``algorithm="auto"`` each all-reduce uses the algorithm the cost model picks for its size,
so the formula follows the buckets: the sum over buckets of the chosen algorithm's bytes.
"""
from collectives.algorithms import choose, lookup
from collectives.bucketed import plan_buckets


def allreduce_bytes(algorithm, p, nbytes, link=None):
    """Mean bytes sent per rank by one all-reduce of ``nbytes`` over ``p`` ranks (None for "mpi");
    "auto": the algorithm ``choose(p, nbytes, link)`` picks."""
    if algorithm == "auto":
        algorithm = choose(p, nbytes, link)
    return lookup(algorithm).bytes_sent(p, nbytes)   # the formulas live in collectives/algorithms.py


def bucketed_allreduce_bytes(algorithm, p, arrays, bucket_bytes, link=None):
    """Mean bytes sent per rank by ``bucketed_allreduce(arrays, bucket_bytes, algorithm)``: for a
    fixed algorithm the whole n (the formulas are linear in n), for "auto" bucket by bucket."""
    if algorithm != "auto":
        return allreduce_bytes(algorithm, p, sum(a.nbytes for a in arrays))
    return sum(allreduce_bytes("auto", p, sum(arrays[i].nbytes for i in bucket), link)
               for bucket in plan_buckets(arrays, bucket_bytes))
