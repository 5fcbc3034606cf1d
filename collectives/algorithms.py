"""Every all-reduce algorithm in one table: its function, its predicted time, its traffic.

With n the bytes per rank, p ranks, L = ceil(log2 p), q the largest power of 2 <= p,
f = 1 if p != q else 0, and the link's alpha (s per message), beta (s per byte), gamma
(s per byte reduced) - see costmodel.py for what they are and how they are measured:

    name                  seconds                                        mean bytes sent per rank
    "naive"               2 (p-1) (alpha + n beta) + (p-1) n gamma       2 (p-1)/p n
    "tree"                2 L (alpha + n beta) + L n gamma               2 (p-1)/p n
    "recursive-doubling"  (log2 q + 2 f) (alpha + n beta)                (q log2 q + 2 (p-q))/p n
                            + (log2 q + f) n gamma
    "ring"                2 (p-1) alpha + 2 (p-1)/p n beta               2 (p-1)/p n
                            + (p-1)/p n gamma
    "mpi"                 the library's own: no model                    not counted (None)

(each algorithm's module derives its line). The traffic column is what ``comm.counters``
count, averaged over ranks: naive, tree and ring all move 2 (p-1) whole arrays' worth in
total, spread differently; recursive doubling moves log2 q arrays on each of q ranks plus
one each way per folded pair. The ring's mean is exact for any n (uneven chunks average out).

``algorithm="auto"``: ``choose(p, n, link)`` is the hand-written algorithm with the smallest
predicted time. This is what MPICH does inside MPI_Allreduce (it switches from recursive
doubling to reduce-scatter + all-gather above a message size), made visible: the rule is
the cost model, the link is measured (``comm.link = costmodel.measure_link(comm)``, and the
fixed cost of each algorithm with ``measure_latencies``: see costmodel.py) or DEFAULT_LINK.
The choice is a pure function of (p, n, link), so every rank - holding the same p, n and the
same measured link (both measurements return the same numbers on every rank) - picks the
same algorithm, as a collective must.
"""
import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy

from collectives.costmodel import LinkModel
from collectives.mpi_library import mpi_allreduce
from collectives.naive import naive_allreduce
from collectives.recursive_doubling import recursive_doubling_allreduce
from collectives.ring import ring_allreduce
from collectives.tree import tree_allreduce


@dataclass(frozen=True)
class Algorithm:
    """One all-reduce: ``function(comm, x, op, *, out, check)``, its time and traffic formulas
    (``time_formula(p, n, link)``, ``traffic_formula(p, n)``; None for the library's)."""

    name: str
    function: Callable
    time_formula: Callable | None
    traffic_formula: Callable | None

    def seconds(self, p, nbytes, link):
        """Predicted seconds for one all-reduce of ``nbytes`` per rank on ``p`` ranks; with a
        measured latency for this algorithm in ``link.latency``, that replaces the formula's
        alpha terms:  measured + (formula(n) - formula(0))."""
        if self.time_formula is None:
            raise ValueError(f"no cost model for {self.name!r}")
        if p == 1:
            return 0.0
        seconds = self.time_formula(p, nbytes, link)
        measured = dict(link.latency).get(self.name)
        if measured is not None:
            seconds += measured - self.time_formula(p, 0, link)
        return seconds

    def bytes_sent(self, p, nbytes):
        """Mean bytes sent per rank, as the counters count them (None: not counted)."""
        if self.traffic_formula is None:
            return None
        return 0.0 if p == 1 else self.traffic_formula(p, nbytes)


def _naive_seconds(p, n, link):
    return 2 * (p - 1) * (link.alpha + n * link.beta) + (p - 1) * n * link.gamma


def _tree_seconds(p, n, link):
    levels = math.ceil(math.log2(p))
    return 2 * levels * (link.alpha + n * link.beta) + levels * n * link.gamma


def _recursive_doubling_seconds(p, n, link):
    q = 1 << (p.bit_length() - 1)
    fold = 0 if p == q else 1
    rounds = q.bit_length() - 1  # log2 q
    return (rounds + 2 * fold) * (link.alpha + n * link.beta) + (rounds + fold) * n * link.gamma


def _ring_seconds(p, n, link):
    return 2 * (p - 1) * link.alpha + 2 * (p - 1) / p * n * link.beta + (p - 1) / p * n * link.gamma


def _whole_arrays_twice(p, n):  # naive, tree and ring: 2 (p-1) arrays' worth over p ranks
    return 2 * (p - 1) / p * n


def _recursive_doubling_bytes(p, n):
    q = 1 << (p.bit_length() - 1)
    return (q * (q.bit_length() - 1) + 2 * (p - q)) / p * n


ALGORITHMS = {algorithm.name: algorithm for algorithm in [
    Algorithm("naive", naive_allreduce, _naive_seconds, _whole_arrays_twice),
    Algorithm("tree", tree_allreduce, _tree_seconds, _whole_arrays_twice),
    Algorithm("recursive-doubling", recursive_doubling_allreduce, _recursive_doubling_seconds,
              _recursive_doubling_bytes),
    Algorithm("ring", ring_allreduce, _ring_seconds, _whole_arrays_twice),
    Algorithm("mpi", mpi_allreduce, None, None),
]}

# Measured on the 2-core development machine, quiet, with 4 ranks (benchmarks/collectives.py under
# mpirun -n 4): alpha by ring_step_latency (every rank busy at once, oversubscribed: what a
# collective sees there; ping-pong's alpha is ~7 us), beta by ping-pong, gamma by np.add. Only
# alpha/beta (~140 KB) and gamma/beta decide the choice, and a loaded machine scales all three.
DEFAULT_LINK = LinkModel(alpha=12.5e-6, beta=0.09e-9, gamma=0.034e-9)


def lookup(name):
    """The Algorithm called ``name`` (a ValueError listing the names otherwise)."""
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        hint = f" (did you mean {name.replace('_', '-')!r}?)" \
            if isinstance(name, str) and name.replace("_", "-") in ALGORITHMS else ""
        raise ValueError(f"unknown all-reduce algorithm {name!r}{hint}: choose one of "
                         f"{sorted(ALGORITHMS) + ['auto']}") from None


def choose(p, nbytes, link=None):
    """The name of the hand-written algorithm with the smallest predicted time (never "mpi";
    ties go to the first in ALGORITHMS' order). ``link``: a LinkModel, default DEFAULT_LINK."""
    link = DEFAULT_LINK if link is None else link
    modelled = [a for a in ALGORITHMS.values() if a.time_formula is not None]
    return min(modelled, key=lambda a: a.seconds(p, nbytes, link)).name


def auto_allreduce(comm, x, op="sum", *, out=None, check=True):
    """All-reduce with ``choose(comm.size, x.nbytes, comm.link)`` (the same on every rank)."""
    return ALGORITHMS[choose(comm.size, x.nbytes, comm.link)].function(comm, x, op, out=out,
                                                                       check=check)


def measure_latencies(comm, repeats=50, warmup=5):
    """{name: seconds of one all-reduce of 8 bytes} for every modelled algorithm, the slowest
    rank's median, the same on every rank (collective over ``comm``): the fixed cost of each
    algorithm on this machine at this load, for ``LinkModel(..., latency=...)``."""
    x = numpy.zeros(1)
    medians = []
    for algorithm in ALGORITHMS.values():
        if algorithm.time_formula is None:
            continue
        times = []
        for repeat in range(warmup + repeats):
            comm.barrier()
            start = time.perf_counter()
            algorithm.function(comm, x, "sum", check=False)
            times.append(time.perf_counter() - start)
        medians.append(float(numpy.median(times[warmup:])))
    slowest = tree_allreduce(comm, numpy.array(medians), "max", check=False)
    names = [a.name for a in ALGORITHMS.values() if a.time_formula is not None]
    return dict(zip(names, slowest.tolist()))


def get_algorithm(algorithm):
    """The all-reduce function for a name in ALGORITHMS or "auto", or the function itself."""
    if callable(algorithm):
        return algorithm
    if algorithm == "auto":
        return auto_allreduce
    return lookup(algorithm).function
