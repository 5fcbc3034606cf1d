"""The compressor interface, the all-gather transport, and error feedback (MATH A6).

A compressor C turns this rank's flat gradient g (n,) into a payload (a tuple of arrays)
smaller than g, and back: g_hat = D(C(g)). The data-parallel step needs, on every rank,

    exchange(comm, g_r) = (1/p) sum_r D(C(g_r))          the mean of what each rank's payload decodes to

Transports. A payload that is the same kind of thing on every rank at the same positions
(a dense array) is summed on the way by a ring all-reduce: 2 (p-1)/p * payload bytes per rank.
A payload whose meaning differs per rank (top-k index sets, per-rank norms or scales) cannot
be added before decoding: it is all-gathered, (p-1) * payload bytes per rank, and every rank
decodes all p payloads in rank order and averages (the same arithmetic, so the same array,
on every rank). All-gather costs p/2 times the ring's bytes per payload byte, so it only pays
when the payload is more than p/2 times smaller than g.

Error feedback (Seide et al. 2014; Karimireddy et al. 2019, EF-SGD). A biased compressor
(top-k, sign) drops part of g every step; EF keeps it in a local residual e and adds it back:

    v = g + e,    send C(v),    e <- v - D(C(v))          (D: this rank's LOCAL decode)

so nothing is lost, only delayed: sum_t D(C(v_t)) + e_T = sum_t g_t exactly (telescoping).
Cost: one extra float per parameter of memory; no extra bytes on the wire.
"""
import numpy

import collectives
from strategies.checkpoint.stateful import Stateful


class Compressor(Stateful):
    """Base: subclasses set ``name`` and define compress, decompress and bytes_sent; the default
    ``exchange`` is the all-gather transport above (``transport`` is the part after compress).
    ``state_attributes``: what changes step by step (residuals, random streams): checkpoints."""
    name = "base"
    error_feedback = False

    def compress(self, g):
        raise NotImplementedError

    def decompress(self, payload, n):
        raise NotImplementedError

    def bytes_sent(self, p, n, itemsize):
        raise NotImplementedError

    def bind(self, comm):
        """Called by ``exchange`` before compressing: a hook for per-rank state (seeded RNGs)."""

    def exchange(self, comm, g):
        self.bind(comm)
        return self.transport(comm, self.compress(g), g.size)

    def transport(self, comm, payload, n):
        """(1/p) sum_r D(payload_r): all-gather every array of the payload, decode each rank's."""
        gathered = [collectives.all_gather(comm, numpy.ascontiguousarray(a), check=False) for a in payload]
        total = None
        for r in range(comm.size):                      # rank order: the same sum on every rank
            decoded = self.decompress(tuple(a[r] for a in gathered), n)
            total = decoded.copy() if total is None else total + decoded
        return total / comm.size

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class NoCompression(Compressor):
    """"none": the ring all-reduce mean of g itself, 2 (p-1)/p * n * itemsize bytes per rank.

    It is ``collectives.allreduce(comm, g, "ring", "mean")`` on the whole flat g. DataParallel
    runs the same ring mean but per bucket (``bucketed_allreduce``, buckets of ``bucket_bytes``
    in reverse parameter order): equal bytes (the formula is linear in n), and equal values
    bit for bit only when g is one bucket laid out the same way (the ring's chunking, hence its
    summation order, depends on the buffer it is given) - the strategy's business, not ours."""
    name = "none"

    def compress(self, g):
        return (g,)

    def decompress(self, payload, n):
        return payload[0].reshape(n)

    def transport(self, comm, payload, n):
        return collectives.allreduce(comm, payload[0], "ring", "mean", check=False)

    def bytes_sent(self, p, n, itemsize):
        return 2 * (p - 1) / p * n * itemsize


class ErrorFeedback(Compressor):
    """EF around any compressor (the module docstring): ``residual`` is e, this rank's memory."""
    error_feedback = True
    state_attributes = ("residual", "inner")

    def __init__(self, inner):
        self.inner, self.name, self.residual = inner, inner.name, None

    def compress(self, g):
        v = g if self.residual is None else g + self.residual
        payload = self.inner.compress(v)
        self.residual = v - self.inner.decompress(payload, v.size)   # what was not sent, kept
        return payload

    def decompress(self, payload, n):
        return self.inner.decompress(payload, n)

    def bind(self, comm):
        self.inner.bind(comm)

    def transport(self, comm, payload, n):
        return self.inner.transport(comm, payload, n)

    def bytes_sent(self, p, n, itemsize):
        return self.inner.bytes_sent(p, n, itemsize)

    def __repr__(self):
        return f"ErrorFeedback({self.inner!r})"


def check_ratio(ratio):
    if not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise ValueError(f"ratio must be in (0, 1], got {ratio!r}")
    return float(ratio)
