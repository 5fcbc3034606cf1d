"""The alpha-beta cost model: predicted all-reduce time from (alpha, beta, gamma, p, n).

A message of n bytes between two ranks takes  t(n) = alpha + n beta:

    alpha   latency, seconds per message (software overhead, wire latency)
    beta    seconds per byte (1 / bandwidth)
    gamma   seconds per byte reduced (the np.add of the reduction, memory bound)

An algorithm is a sequence of steps in which ranks exchange at once, so its time is the sum
over steps of the slowest message. The formulas of every all-reduce are in one table, in
algorithms.py (each algorithm's docstring derives its line); for example

    tree                2 L (alpha + n beta) + L n gamma,              L = ceil(log2 p)
    ring                2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma

Where the lines cross: tree versus ring for p = 4 (L = 2) without gamma is where
4 alpha + 4 n beta = 6 alpha + 1.5 n beta, i.e. n* = 0.8 alpha / beta; below it the fewer
latencies win, above it the ring's smaller bandwidth term. Recursive doubling (2 alpha +
2 n beta for p = 4) against the ring: n* = 8 alpha / beta. gamma moves both crossovers a
little (benchmarks/collectives.py plots the lines with the measured alpha, beta, gamma).

``ping_pong`` measures alpha and beta between ranks 0 and 1 the standard way: rank 0 sends
n bytes, rank 1 sends them back, half the round-trip time is t(n); alpha = t(small), beta
from the slope at a large size. ``ring_step_latency`` measures alpha again with every rank
busy (what a collective sees; much larger when ranks share cores). ``measure_gamma`` times
np.add on a large array.

One alpha for every algorithm assumes every message costs the same. When ranks share cores
they do not: a round in which every rank exchanges at once (recursive doubling, the ring)
waits for the scheduler more than a round in which half the ranks are idle (the tree's
rounds). ``LinkModel.latency`` holds each algorithm's own fixed cost, measured by timing it on
a tiny array (``algorithms.measure_latencies``); the model then keeps the formula's byte terms
and puts the measured fixed cost in place of its alpha terms.
"""
import math
import time
from dataclasses import dataclass

import numpy


@dataclass(frozen=True)
class LinkModel:
    alpha: float          # s per message
    beta: float           # s per byte
    gamma: float = 0.0    # s per byte reduced
    latency: tuple = ()   # ((algorithm name, s), ...): an algorithm's measured time at ~0 bytes,
                          # which replaces the alpha terms of its formula (algorithms.py)


def predict(algorithm, p, nbytes, link):
    """Predicted seconds for one all-reduce of ``nbytes`` on ``p`` ranks (algorithms.py's table)."""
    from collectives.algorithms import lookup  # algorithms.py imports LinkModel from here
    return lookup(algorithm).seconds(p, nbytes, link)


def ping_pong(comm, nbytes, repeats=50, warmup=5):
    """Half the median round-trip time of an ``nbytes`` message between ranks 0 and 1.

    Collective over ``comm``: ranks other than 0 and 1 wait at the barrier. Returns the same
    number on every rank (rank 0's measurement).
    """
    buf = numpy.zeros(max(nbytes, 0), numpy.uint8)
    times = []
    comm.barrier()
    for repeat in range(warmup + repeats):
        start = time.perf_counter()
        if comm.rank == 0:
            comm.send(buf, 1)
            comm.recv(buf, 1)
        elif comm.rank == 1:
            comm.recv(buf, 0)
            comm.send(buf, 0)
        if repeat >= warmup:
            times.append((time.perf_counter() - start) / 2)
    result = numpy.array([numpy.median(times) if comm.rank == 0 else 0.0])
    comm.barrier()
    return _from_rank0(comm, result)


def _from_rank0(comm, value):
    if comm.rank == 0:
        for peer in range(1, comm.size):
            comm.send(value, peer)
    else:
        comm.recv(value, 0)
    return float(value[0])


def ring_step_latency(comm, repeats=50, warmup=5):
    """Mean seconds of one ring step with tiny messages while EVERY rank is busy.

    Ping-pong leaves the other ranks idle. Inside an all-reduce all p ranks communicate at
    once; when ranks outnumber cores (oversubscription) every step then waits for the
    scheduler, and this "loaded" alpha is the one that predicts the small-message times.
    """
    out, back = numpy.zeros(8, numpy.uint8), numpy.zeros(8, numpy.uint8)
    right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
    for _ in range(warmup):
        comm.sendrecv(out, right, back, left)
    comm.barrier()
    start = time.perf_counter()
    for _ in range(repeats):  # the mean, not the median: the scheduler's stalls are the point
        comm.sendrecv(out, right, back, left)
    value = numpy.array([(time.perf_counter() - start) / repeats])
    comm.barrier()
    return _from_rank0(comm, value)


def measure_gamma(nbytes=16 << 20, repeats=5):
    """Seconds per byte of an in-place float64 np.add over ``nbytes`` (one rank, no comm)."""
    a = numpy.ones(nbytes // 8)
    b = numpy.ones(nbytes // 8)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        numpy.add(a, b, out=a)
        best = min(best, time.perf_counter() - start)
    return best / nbytes


def measure_link(comm, small=8, large=4 << 20, repeats=30):
    """LinkModel(alpha, beta, gamma) for this machine, measured (collective over ``comm``).

    Rank 0's numbers on every rank (gamma too), so that ``algorithms.choose`` makes the same
    choice everywhere when ``comm.link`` is set from it.
    """
    alpha = ping_pong(comm, small, repeats)
    t_large = ping_pong(comm, large, max(3, repeats // 5))
    beta = max(t_large - alpha, 0.0) / large
    gamma = _from_rank0(comm, numpy.array([measure_gamma()]))
    return LinkModel(alpha, beta, gamma)
