"""The point-to-point interface every collective is written against.

A collective in this package is a few loops of ``send``/``recv``/``sendrecv``
on a ``Comm``. Two worlds implement it:

    collectives.world()            MPIComm   one process per rank, under mpirun  (mpi_world.py)
    collectives.spawn(fn, p)       ThreadComm p threads in this process          (inprocess.py)

so the same ``ring_allreduce`` runs under ``mpirun -n 4`` and inside a notebook.

What a subclass provides (the primitives, never counted):

    _send(buf, dest, tag)            _recv(buf, source, tag)
    _isend(buf, dest, tag) -> req    _irecv(buf, source, tag) -> req      req.wait()
    _sendrecv(sendbuf, dest, recvbuf, source, tag)

What this base class adds on top (the public methods the algorithms call):

* counters: every message and byte sent and received by this rank (``comm.counters``);
* an opt-in trace of every message (``comm.trace = Trace(echo=True)``, see trace.py);
* the rule that buffers are contiguous arrays (NumPy, or CuPy - see mpi_world.py), sent as
  raw bytes, so any numeric dtype travels unchanged and ``nbytes`` is what is counted.

Matching follows MPI: a receive names its source and tag; messages between one pair of
ranks with one tag arrive in the order they were sent.
"""
from dataclasses import dataclass

import numpy

from engine.backend import device_of


@dataclass
class Counters:
    """Messages and bytes that one rank sent and received (payload bytes, no headers)."""

    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0

    def reset(self):
        self.messages_sent = self.bytes_sent = 0
        self.messages_received = self.bytes_received = 0


@dataclass(frozen=True)
class Note:
    """What a message is, for the trace: the algorithm's phase, its step and the chunk indices."""

    phase: str
    step: int
    chunk_sent: int | None = None
    chunk_received: int | None = None


def _check_buffer(buf):
    if not buf.flags.c_contiguous:
        raise ValueError("message buffers must be C-contiguous (send a contiguous slice or a copy)")
    return buf


class Comm:
    """Base class: rank, size, counted point-to-point calls, barrier, split (see above)."""

    rank: int
    size: int
    cuda_aware: bool = False  # True when CuPy buffers may be handed to the transport directly

    def __init__(self):
        self.counters = Counters()
        self.trace = None  # a trace.Trace to record every message, or None

    # -- the counted, traced public calls -------------------------------------------------
    def send(self, buf, dest, tag=0, note=None):
        """Blocking send of the bytes of ``buf`` to rank ``dest``."""
        self._count_send(_check_buffer(buf), dest, note)
        self._send(buf, dest, tag)

    def recv(self, buf, source, tag=0, note=None):
        """Blocking receive from rank ``source`` into ``buf`` (its size is the message size)."""
        self._count_recv(_check_buffer(buf), source, note)
        self._recv(buf, source, tag)
        return buf

    def sendrecv(self, sendbuf, dest, recvbuf, source, tag=0, note=None):
        """Send to ``dest`` and receive from ``source`` at once: the deadlock-free ring step."""
        self._count_send(_check_buffer(sendbuf), dest, note)
        self._count_recv(_check_buffer(recvbuf), source, note)
        self._sendrecv(sendbuf, dest, recvbuf, source, tag)
        return recvbuf

    def isend(self, buf, dest, tag=0, note=None):
        """Start a send; ``buf`` must not change until the returned request's ``wait()``."""
        self._count_send(_check_buffer(buf), dest, note)
        return self._isend(buf, dest, tag)

    def irecv(self, buf, source, tag=0, note=None):
        """Start a receive into ``buf``; its contents are valid after ``wait()``."""
        self._count_recv(_check_buffer(buf), source, note)
        return self._irecv(buf, source, tag)

    @staticmethod
    def waitall(requests):
        for request in requests:
            request.wait()

    def barrier(self):
        """Dissemination barrier: ceil(log2 p) rounds of empty messages (uncounted).

        Round k: send to rank + 2^k, receive from rank - 2^k. After the last round every rank
        has heard, directly or through others, from every rank, so nobody leaves early.
        """
        empty = numpy.empty(0, numpy.uint8)
        distance = 1
        while distance < self.size:
            self._sendrecv(empty, (self.rank + distance) % self.size,
                           empty, (self.rank - distance) % self.size, BARRIER_TAG)
            distance *= 2

    def split(self, color, key=0):
        """Sub-communicator of the ranks that pass the same ``color`` (None: not a member)."""
        raise NotImplementedError

    # -- bookkeeping ----------------------------------------------------------------------
    def _count_send(self, buf, dest, note):
        self.counters.messages_sent += 1
        self.counters.bytes_sent += buf.nbytes
        if self.trace is not None:
            self.trace.record(self.rank, "send", dest, buf.nbytes, note)

    def _count_recv(self, buf, source, note):
        self.counters.messages_received += 1
        self.counters.bytes_received += buf.nbytes
        if self.trace is not None:
            self.trace.record(self.rank, "recv", source, buf.nbytes, note)

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size})"


# Tags at or above this value belong to the library's own bookkeeping, never to data.
BARRIER_TAG = 30001
CHECK_TAG = 30002
SPLIT_TAG = 30003


def on_gpu(buf):
    """True for a CuPy buffer (the transports treat it specially: see mpi_world.py)."""
    return device_of(buf) == "cuda"
