"""Ring all-reduce = reduce-scatter + all-gather, each p - 1 steps round a ring.

The p ranks stand in a ring; each only ever talks to its two neighbours:

                 +--------> rank 1 ---------+
                 |                          v          right = (rank + 1) % p
              rank 0                      rank 2       left  = (rank - 1) % p
                 ^                          |
                 +--------- rank 3 <--------+          data always flows clockwise

Every rank cuts its n-element array into p chunks c0 ... c{p-1} (chunks.py: sizes differ by
at most one element when p does not divide n; chunks may be empty when n < p).

Phase 1, reduce-scatter (p - 1 steps). At ``step`` each rank sends one chunk to ``right`` and
receives one from ``left``, which it adds into its own copy of that chunk:

    send_chunk = (rank - step - 1) % p        recv_chunk = (rank - step - 2) % p

    p = 4       rank 0     rank 1     rank 2     rank 3       (chunk each rank sends right)
    step 0        c3         c0         c1         c2
    step 1        c2         c3         c0         c1
    step 2        c1         c2         c3         c0

Follow c0: rank 1 sends x1 to rank 2, which adds x2; rank 2 sends x1+x2 to rank 3, which adds
x3; rank 3 sends x1+x2+x3 to rank 0, which adds x0. After p - 1 steps rank r holds chunk r
summed over all p ranks (the reduce-scatter result, each rank owning one chunk).

Phase 2, all-gather (p - 1 steps). The finished chunks travel round the ring once more; now a
received chunk overwrites (no arithmetic):

    send_chunk = (rank - step) % p            recv_chunk = (rank - step - 1) % p

    p = 4       rank 0     rank 1     rank 2     rank 3
    step 0        c0         c1         c2         c3
    step 1        c3         c0         c1         c2
    step 2        c2         c3         c0         c1

Cost in the alpha-beta model (alpha: latency per message, beta: seconds per byte, gamma:
seconds per byte reduced, n in bytes): every step is one message of about n/p bytes, and all
ranks send at once, so

    T_ring = 2 (p - 1) alpha  +  2 (p - 1)/p  n beta  +  (p - 1)/p  n gamma

The bandwidth term does not grow with p (it tends to 2 n beta): that is why the ring wins for
large arrays, and why its 2(p - 1) latency terms make it lose for small ones (costmodel.py).

Exact traffic per rank, with size_i the element count of chunk i and s the itemsize: rank r
sends every chunk but its own in phase 1 and every chunk but chunk r+1 in phase 2, so

    bytes sent by rank r = (2 n - size_r - size_{(r+1) % p}) s      in 2 (p - 1) messages

which is exactly 2 (p - 1)/p n s when p divides n (tests/test_collectives.py checks it).

Every chunk is summed in a single chain and then copied, so every rank ends with bit-for-bit
the same result, even for floating point.
"""
from engine.backend import array_module

from collectives.check import check_same
from collectives.chunks import chunk_bounds, chunk_sizes
from collectives.comm import Note
from collectives.guard import collective
from collectives.reduction import Op, combine_into, finish, result_buffer


def reduce_scatter_phase(comm, buf, bounds, op, scratch):
    """Phase 1 in place on the flat ``buf``: afterwards chunk ``rank`` is fully reduced.

    ``scratch`` holds at least the largest chunk: every step receives into it, then
    combines it into ``buf`` - no allocation inside the loop.
    """
    rank, p = comm.rank, comm.size
    right, left = (rank + 1) % p, (rank - 1) % p
    for step in range(p - 1):
        send_chunk = (rank - step - 1) % p
        recv_chunk = (rank - step - 2) % p
        send_lo, send_hi = bounds[send_chunk]
        recv_lo, recv_hi = bounds[recv_chunk]
        incoming = scratch[:recv_hi - recv_lo]
        comm.sendrecv(buf[send_lo:send_hi], right, incoming, left,
                      note=Note("reduce-scatter", step, send_chunk, recv_chunk))
        combine_into(op, buf[recv_lo:recv_hi], incoming)


def all_gather_phase(comm, buf, bounds):
    """Phase 2 in place on the flat ``buf``: chunk ``rank`` is sent round until all have all."""
    rank, p = comm.rank, comm.size
    right, left = (rank + 1) % p, (rank - 1) % p
    for step in range(p - 1):
        send_chunk = (rank - step) % p
        recv_chunk = (rank - step - 1) % p
        send_lo, send_hi = bounds[send_chunk]
        recv_lo, recv_hi = bounds[recv_chunk]
        comm.sendrecv(buf[send_lo:send_hi], right, buf[recv_lo:recv_hi], left,
                      note=Note("all-gather", step, send_chunk, recv_chunk))


@collective
def ring_allreduce(comm, x, op=Op.SUM, *, out=None, check=True):
    """y = x_0 (op) ... (op) x_{p-1} on every rank, by the ring (see the module docstring).

    x: any shape, any numeric dtype; the same shape and dtype on every rank (checked unless
    ``check=False``). Returns a new array, or ``out`` filled (``out=x``: in place).
    """
    op = Op(op)
    if check:
        check_same(comm, x, f"ring_allreduce op={op.value}")
    buf = result_buffer(x, out)                                   # (n,)
    bounds = chunk_bounds(buf.size, comm.size)
    scratch = array_module(buf).empty(max(chunk_sizes(buf.size, comm.size)), buf.dtype)
    reduce_scatter_phase(comm, buf, bounds, op, scratch)
    all_gather_phase(comm, buf, bounds)
    return finish(buf, op, comm.size, x.shape, out)


@collective
def reduce_scatter(comm, x, op=Op.SUM, *, check=True):
    """Chunk ``rank`` of the all-reduce of x (flattened): a 1-D array of chunk_sizes(n, p)[rank].

    Phase 1 alone: T = (p - 1) alpha + (p - 1)/p n beta + (p - 1)/p n gamma.
    """
    op = Op(op)
    if check:
        check_same(comm, x, f"reduce_scatter op={op.value}")
    buf = result_buffer(x)                                        # (n,)
    bounds = chunk_bounds(buf.size, comm.size)
    scratch = array_module(buf).empty(max(chunk_sizes(buf.size, comm.size)), buf.dtype)
    reduce_scatter_phase(comm, buf, bounds, op, scratch)
    lo, hi = bounds[comm.rank]
    return finish(buf[lo:hi].copy(), op, comm.size, (hi - lo,))


@collective
def all_gather(comm, x, *, check=True):
    """Every rank's x stacked in rank order, on every rank: shape (p, *x.shape).

    Phase 2 alone, with equal chunks (each rank's x): T = (p - 1) alpha + (p - 1) n beta,
    n being the bytes of one rank's x.
    """
    if check:
        check_same(comm, x, "all_gather")
    xp = array_module(x)
    stacked = xp.empty((comm.size,) + x.shape, x.dtype)          # (p, *x.shape)
    stacked[comm.rank] = x
    m = x.size
    all_gather_phase(comm, stacked.reshape(-1), [(r * m, (r + 1) * m) for r in range(comm.size)])
    return stacked
