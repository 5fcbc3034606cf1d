"""The point-to-point interface every collective (and every server or pipeline) is written against.

A collective in this package is a few loops of ``send``/``recv``/``sendrecv`` on a ``Comm``.
Two worlds implement it:

    collectives.world()            MPIComm   one process per rank, under mpirun  (mpi_world.py)
    collectives.spawn(fn, p)       ThreadComm p threads in this process          (inprocess.py)

so the same ``ring_allreduce`` runs under ``mpirun -n 4`` and inside a notebook.

Matching follows MPI. A receive names a source (or ANY_SOURCE) and a tag (or ANY_TAG, see
tags.py); messages between one pair of ranks with one tag arrive in the order they were sent,
and a receive takes the earliest matching message. Every receive returns a ``Status`` saying
which message it got: ``status = comm.recv(buf, ANY_SOURCE, Tag.GRADIENT); status.source``.

    send(buf, dest, tag)                      recv(buf, source, tag) -> Status
    isend(...) -> Request                     irecv(...) -> Request    request.wait() -> Status
    sendrecv(sendbuf, dest, recvbuf, source)  request.test() -> bool (completes it if it can)
    waitall(requests) -> [Status]             waitany(requests) -> (index, Status)
    probe(source, tag) -> Status              iprobe(source, tag) -> Status | None

What a subclass provides (the primitives, never counted; a pending receive has ``wait() ->
Status`` and ``test() -> bool``):

    _send(buf, dest, tag)             _recv(buf, source, tag) -> Status
    _isend(buf, dest, tag) -> pending _irecv(buf, source, tag) -> pending
    _sendrecv(sendbuf, dest, recvbuf, source, tag) -> Status
    _probe(source, tag, block) -> Status | None       _wait_any(pendings) -> index
    _split(color, key) -> Comm | None

What this base class adds: checked peers and buffers (contiguous arrays sent as raw bytes, so
``nbytes`` is what travels and what is counted), counters that roll up into the parent
communicator (counters.py), an opt-in trace (trace.py), a barrier, ``split``.

Threads. One communicator per thread: as in MPI, two threads running collectives (or
point-to-point calls with the same tags) on one communicator at once take each other's
messages and give silently wrong results. Give each thread its own (``comm.split(0,
name="thread 2")``, called on every rank). A second thread entering a collective on a comm
while another is inside one raises RuntimeError naming both (guard.py); point-to-point
calls are not checked.
"""
import threading
from dataclasses import dataclass

import numpy

from collectives.counters import CounterTree
from collectives.tags import TAG_MAX, Tag
from engine.backend import device_of

ANY_SOURCE = -2   # a receive or probe that takes a message from any rank (MPICH's value)
ANY_TAG = -1      # ... that takes a message with any tag (MPI's value)


@dataclass(frozen=True)
class Status:
    """What a receive got: the sender's rank, the message's tag and its size in bytes."""

    source: int
    tag: int
    nbytes: int


@dataclass(frozen=True)
class Note:
    """What a message is, for the trace: the algorithm's phase, its step and the chunk indices."""

    phase: str
    step: int
    chunk_sent: int | None = None
    chunk_received: int | None = None


class Request:
    """A started send or receive. ``wait()`` completes it and returns its Status (None for a
    send); ``test()`` completes it if it can without waiting and says whether it is done."""

    def __init__(self, pending, on_done=None):
        self._pending, self._on_done = pending, on_done  # on_done(status): count it, trace it
        self.done, self.status = False, None

    def wait(self):
        if not self.done:
            self._complete(self._pending.wait())
        return self.status

    def test(self):
        if not self.done and self._pending.test():
            self._complete(self._pending.wait())  # returns at once: the message is there
        return self.done

    def _complete(self, status):
        self.done, self.status = True, status
        if self._on_done is not None:
            self._on_done(status)


def _check_buffer(buf):
    if not buf.flags.c_contiguous:
        raise ValueError("message buffers must be C-contiguous (send a contiguous slice or a copy)")
    return buf


class Comm(CounterTree):
    """Base class: rank, size, checked and counted point-to-point calls, barrier, split."""

    rank: int
    size: int
    cuda_aware: bool = False  # True when CuPy buffers may be handed to the transport directly

    def __init__(self, name="world"):
        CounterTree.__init__(self, name)
        self.trace = None  # a trace.Trace to record every message, or None
        self.link = None   # a costmodel.LinkModel for algorithm="auto" (algorithms.py), or None
        self._collective_lock = threading.RLock()   # held by the thread inside a collective
        self._collective_owner = None               # (its thread's name, the collective)

    # -- sends ---------------------------------------------------------------------------
    def send(self, buf, dest, tag=Tag.DATA, note=None):
        """Blocking send of the bytes of ``buf`` to rank ``dest``."""
        self._check_send(buf, dest, tag, "send")
        self._count_send(buf, dest, note)
        self._send(buf, dest, tag)

    def isend(self, buf, dest, tag=Tag.DATA, note=None):
        """Start a send; ``buf`` must not change until the returned request's ``wait()``."""
        self._check_send(buf, dest, tag, "isend")
        self._count_send(buf, dest, note)
        return Request(self._isend(buf, dest, tag))

    # -- receives ------------------------------------------------------------------------
    def recv(self, buf, source, tag=Tag.DATA, note=None):
        """Blocking receive into ``buf`` (its size must be the message's) -> Status."""
        self._check_recv(buf, source, tag, "recv")
        on_done = self._start_count_recv(buf, source, note)
        status = self._recv(buf, source, tag)
        on_done(status)
        return status

    def irecv(self, buf, source, tag=Tag.DATA, note=None):
        """Start a receive into ``buf``; its contents are valid once the Request is done."""
        self._check_recv(buf, source, tag, "irecv")
        on_done = self._start_count_recv(buf, source, note)
        return Request(self._irecv(buf, source, tag), on_done)

    def sendrecv(self, sendbuf, dest, recvbuf, source, tag=Tag.DATA, note=None):
        """Send to ``dest`` and receive from ``source`` at once (the deadlock-free ring step);
        returns the receive's Status."""
        self._check_send(sendbuf, dest, tag, "sendrecv")
        self._check_recv(recvbuf, source, tag, "sendrecv")
        self._count_send(sendbuf, dest, note)
        on_done = self._start_count_recv(recvbuf, source, note)
        status = self._sendrecv(sendbuf, dest, recvbuf, source, tag)
        on_done(status)
        return status

    def probe(self, source=ANY_SOURCE, tag=ANY_TAG):
        """Wait until a matching message has arrived and describe it, without receiving it."""
        self._check_peer(source, "probe", may_be_any=True)
        self._check_tag(tag, "probe", may_be_any=True)
        return self._probe(source, tag, True)    # block: positional, as @watched wants

    def iprobe(self, source=ANY_SOURCE, tag=ANY_TAG):
        """The Status of a matching message that has arrived, or None (never waits)."""
        self._check_peer(source, "iprobe", may_be_any=True)
        self._check_tag(tag, "iprobe", may_be_any=True)
        return self._probe(source, tag, False)   # do not block

    # -- completing requests -------------------------------------------------------------
    @staticmethod
    def waitall(requests):
        """Complete every request, in order -> their Statuses (None for sends)."""
        return [request.wait() for request in requests]

    def waitany(self, requests):
        """Complete one request that can complete -> (its index, its Status).

        Requests already done are skipped (as MPI skips inactive ones), so the loop
        ``while not all done: i, status = comm.waitany(requests)`` serves each once.
        """
        waiting = [i for i, request in enumerate(requests) if not request.done]
        if not waiting:
            raise ValueError(f"rank {self.rank}: waitany on requests that are all done already")
        for i in waiting:  # one that is ready now wins at once (the lowest index first)
            if requests[i].test():
                return i, requests[i].status
        index = waiting[self._wait_any([requests[i]._pending for i in waiting])]
        return index, requests[index].wait()

    # -- collective bookkeeping ----------------------------------------------------------
    def barrier(self):
        """Dissemination barrier: ceil(log2 p) rounds of empty messages (uncounted).

        Round k: send to rank + 2^k, receive from rank - 2^k. After the last round every rank
        has heard, directly or through others, from every rank, so nobody leaves early.
        """
        empty = numpy.empty(0, numpy.uint8)
        distance = 1
        while distance < self.size:
            self._sendrecv(empty, (self.rank + distance) % self.size,
                           empty, (self.rank - distance) % self.size, Tag.BARRIER)
            distance *= 2

    def split(self, color, key=0, *, name="split", counted=True):
        """Sub-communicator of the ranks that pass the same ``color`` (None: not a member),
        ordered by (key, rank). Collective over this comm.

        ``counted=True``: its messages and bytes also count on this comm (and on this comm's
        parent, ...), and it appears in ``traffic()`` as "<this name>/<name>".
        ``counted=False``: an independent comm whose traffic is in no parent (metrics,
        evaluation). Either way it inherits ``link``.
        """
        sub = self._split(color, key)
        if sub is not None:
            sub.name, sub.link = name, self.link
            if counted:
                self.adopt(sub)
        return sub

    # -- checks and counts ---------------------------------------------------------------
    def _check_peer(self, peer, call, may_be_any=False):
        if may_be_any and peer == ANY_SOURCE:
            return
        if not isinstance(peer, (int, numpy.integer)) or not 0 <= peer < self.size:
            raise ValueError(f"rank {self.rank} of {self.size}: {call}: peer {peer!r} is not a "
                             f"rank of this communicator (0 .. {self.size - 1}"
                             f"{', or ANY_SOURCE' if may_be_any else ''})")

    def _check_tag(self, tag, call, may_be_any):
        if not (may_be_any and tag == ANY_TAG) and not 0 <= tag <= TAG_MAX:
            raise ValueError(f"rank {self.rank} of {self.size}: {call}: tag {tag!r} is not in "
                             f"0 .. {TAG_MAX}{' or ANY_TAG' if may_be_any else ''}")

    def _check_send(self, buf, dest, tag, call):
        _check_buffer(buf)
        self._check_peer(dest, call)
        self._check_tag(tag, call, may_be_any=False)

    def _check_recv(self, buf, source, tag, call):
        _check_buffer(buf)
        self._check_peer(source, call, may_be_any=True)
        self._check_tag(tag, call, may_be_any=True)

    def _start_count_recv(self, buf, source, note):
        """Count a receive at once for a named source (so a collective's counts never depend
        on when it completes), at completion for ANY_SOURCE, when the real source is known.
        Returns the completion hook, ``on_done(status)``."""
        if source != ANY_SOURCE:
            self._count_recv(buf.nbytes, source, note)
            return lambda status: None
        return lambda status: self._count_recv(status.nbytes, status.source, note)

    def _count_send(self, buf, dest, note):
        self.count("sent", buf.nbytes)
        if self.trace is not None:
            self.trace.record(self.rank, "send", dest, buf.nbytes, note)

    def _count_recv(self, nbytes, source, note):
        self.count("received", nbytes)
        if self.trace is not None:
            self.trace.record(self.rank, "recv", source, nbytes, note)

    def __repr__(self):
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, name={self.name!r})"


def describe_receive(call, source, tag, nbytes=None):
    """``recv(source=ANY_SOURCE, tag=ANY_TAG, 40 B)``: a receive or probe, for error messages."""
    source = "ANY_SOURCE" if source == ANY_SOURCE else source
    tag = "ANY_TAG" if tag == ANY_TAG else int(tag)
    return f"{call}(source={source}, tag={tag}" + ("" if nbytes is None else f", {nbytes} B") + ")"


def on_gpu(buf):
    """True for a CuPy buffer (the transports treat it specially: see mpi_world.py)."""
    return device_of(buf) == "cuda"

