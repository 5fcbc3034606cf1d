"""What one training step's communication costs with S servers and W workers, against the ring.

The alpha-beta model (collectives/costmodel.py), n = bytes of theta. Each step every worker
pushes its gradient (n bytes, cut into S slices of n/S, one per server) and pulls theta back.
A link carries one message at a time, so the busiest link sets the time:

    a server's link:   W slices of n/S in, then W out     W (alpha + (n/S) beta), twice
    a worker's link:   S slices of n/S out, then S in     S (alpha + (n/S) beta), twice

    T_ps(W, S, n) = 2 max(W, S) alpha + 2 max(W/S, 1) n beta + (W/S) n gamma     (the sum)

against the ring all-reduce among the W workers (no servers at all):

    T_ring(W, n)  = 2 (W-1) alpha + 2 (W-1)/W n beta + (W-1)/W n gamma

The ring's bandwidth term is bounded (2 n beta for any W); one server's grows as 2 W n beta:
the server is the bottleneck as soon as W > 1, and S servers divide that term by S, until
S = W, where every link carries 2 n, as in the ring. (Latency: the server's W messages
against the ring's 2 (W-1) steps, so with few, large messages the server is not worse.)
benchmarks/parameter_server.py plots both for W = 1 ... 64 beside the measured points.
"""
from collectives.algorithms import ALGORITHMS


def ps_step_seconds(workers, servers, nbytes, link):
    """T_ps above: seconds of one push + pull with ``servers`` servers and ``workers`` workers."""
    W, S, n = workers, servers, nbytes
    return (2 * max(W, S) * link.alpha + 2 * max(W / S, 1) * n * link.beta
            + (W / S) * n * link.gamma)


def ring_step_seconds(workers, nbytes, link):
    """T_ring above: one ring all-reduce of ``nbytes`` among ``workers`` ranks (0 for one)."""
    return ALGORITHMS["ring"].seconds(workers, nbytes, link)   # the one table of formulas
