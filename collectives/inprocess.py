"""The in-process world: p ranks as p threads, one mailbox per rank.

    results = collectives.spawn(lambda comm: ring_allreduce(comm, x[comm.rank]), world_size=4)

runs the function once per rank, each with its own ThreadComm, and returns the list of the
ranks' results (index = rank). Notebooks use it to show 4 ranks step by step, unit tests use
it to run every algorithm without mpirun. The algorithms cannot tell the difference.

How a message travels: mailbox.py (one mailbox per rank, matched on (source, tag) the way
MPI matches). It never hangs: a receive that waits too long raises DeadlockError, one that
waits on a rank that has exited raises RankExitedError (mailbox.py). ``spawn`` then raises
RankError naming the rank whose exception
started it all (the original exception is its ``__cause__``; every one is in ``.errors``).
"""
import itertools
import threading

import numpy

from collectives.comm import ANY_SOURCE, Comm, Status, describe_receive
from collectives.mailbox import DeadlockError, Message, RankExitedError, Wanted, World
from collectives.tags import Tag
from collectives.watchdog import spawn_timeout


class RankError(RuntimeError):
    """Raised by spawn: rank ``rank`` raised ``errors[rank]`` (see ``errors`` for all ranks)."""

    def __init__(self, rank, size, errors):
        self.rank, self.errors = rank, errors
        first = errors[rank]
        others = sorted(set(errors) - {rank})
        also = f" (ranks {others} failed too)" if others else ""
        super().__init__(f"rank {rank} of {size} raised {type(first).__name__}: {first}{also}")


def _status(message):
    return Status(message.source, int(message.tag), message.payload.nbytes)


class _Sent:
    """A send's request: eager, so already complete."""

    def wait(self):
        return None

    def test(self):
        return True

    def ready(self):
        return True


class _PendingReceive:
    def __init__(self, comm, wanted, buf):
        self._comm, self._wanted, self._buf = comm, wanted, buf
        self.what = describe_receive("recv", wanted.source, wanted.tag, buf.nbytes)
        self.waiter = f"{comm.where()}: {self.what}"
        self._status = None

    def ready(self):  # under the world's lock
        return self._wanted.message is not None

    def senders(self):
        return self._comm.senders(self._wanted.source)

    def test(self):
        with self._comm.world.changed:
            return self.ready()

    def wait(self):
        if self._status is None:
            self._comm.world.wait_until(self.ready, self.senders(), self.waiter)
            message = self._wanted.message
            if message.payload.nbytes != self._buf.nbytes:
                raise ValueError(f"{self.waiter}: the message has {message.payload.nbytes} B "
                                 f"(from rank {message.source}, tag {int(message.tag)})")
            flat = self._buf.reshape(-1).view(numpy.uint8)
            flat[...] = message.payload.reshape(-1).view(numpy.uint8)
            self._status = _status(message)
        return self._status


class ThreadComm(Comm):
    """One rank of an in-process world; ``group`` maps this comm's ranks to world ranks."""

    cuda_aware = True  # payloads are array copies, on whichever device the array lives

    def __init__(self, world, context, group, rank):
        super().__init__()
        self.world, self._context, self._group = world, context, group
        self.rank, self.size = rank, len(group)
        self._splits = itertools.count()

    def senders(self, source):
        """The world ranks a receive from ``source`` (or ANY_SOURCE) can be satisfied by."""
        if source == ANY_SOURCE:
            return [r for i, r in enumerate(self._group) if i != self.rank]
        return [self._group[source]]

    def where(self):
        return f"rank {self.rank} of {self.size}"

    def _send(self, buf, dest, tag):
        self.world.deliver(self._group[dest], Message(self._context, self.rank, tag, buf.copy()))

    def _irecv(self, buf, source, tag):
        wanted = Wanted(self._context, source, tag)
        self.world.post(self._group[self.rank], wanted)
        return _PendingReceive(self, wanted, buf)

    def _recv(self, buf, source, tag):
        return self._irecv(buf, source, tag).wait()

    def _isend(self, buf, dest, tag):
        self._send(buf, dest, tag)  # eager: already delivered
        return _Sent()

    def _sendrecv(self, sendbuf, dest, recvbuf, source, tag):
        self._send(sendbuf, dest, tag)
        return self._recv(recvbuf, source, tag)

    def _probe(self, source, tag, block):
        wanted = Wanted(self._context, source, tag)
        me = self._group[self.rank]
        if block:
            waiter = f"{self.where()}: {describe_receive('probe', source, tag)}"
            self.world.wait_until(lambda: self.world.peek(me, wanted) is not None,
                                  self.senders(source), waiter)
        message = self.world.peek(me, wanted)
        return None if message is None else _status(message)

    def _wait_any(self, pendings):
        receives = [p for p in pendings if isinstance(p, _PendingReceive)]
        senders = sorted({rank for p in receives for rank in p.senders()})
        waiter = f"{self.where()}: waitany([{', '.join(p.what for p in receives)}])"
        self.world.wait_until(lambda: any(p.ready() for p in pendings), senders, waiter)
        with self.world.changed:
            return next(i for i, p in enumerate(pendings) if p.ready())

    def _split(self, color, key):
        """Every rank sends (color, key) to every rank; members are ordered by (key, rank)."""
        mine = numpy.array([-1 if color is None else color, key], numpy.int64)
        for peer in range(self.size):
            self._send(mine, peer, Tag.SPLIT)
        table = numpy.empty((self.size, 2), numpy.int64)
        for peer in range(self.size):
            self._recv(table[peer], peer, Tag.SPLIT)
        number = next(self._splits)  # same on every rank: split is collective
        if color is None:
            return None
        members = sorted((k, r) for r, (c, k) in enumerate(table.tolist()) if c == color)
        ranks = [r for _, r in members]
        return ThreadComm(self.world, (self._context, number, color),
                          tuple(self._group[r] for r in ranks), ranks.index(self.rank))


def spawn(fn, world_size, timeout=None):
    """Run ``fn(comm)`` on ``world_size`` threads, one per rank; return their results by rank.

    ``timeout`` bounds every single wait (seconds): a deadlock becomes a DeadlockError.
    None: ``collectives.set_timeout``'s value if set, else 30 s (watchdog.py).
    If any rank raises, RankError is raised here, naming that rank.
    """
    world = World(world_size, spawn_timeout(timeout))
    group = tuple(range(world_size))
    results, errors = [None] * world_size, {}

    def run(rank):
        try:
            results[rank] = fn(ThreadComm(world, (), group, rank))
        except BaseException as exc:  # noqa: BLE001 - reported below, with the rank named
            errors[rank] = exc
            world.exit(rank, f"raised {type(exc).__name__}")
        else:
            world.exit(rank, "returned")

    threads = [threading.Thread(target=run, args=(rank,), name=f"rank {rank}", daemon=True)
               for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        # Ranks that only failed because another rank exited, or that waited in vain for one
        # that had raised, are consequences, not causes; when waits are all there is, the
        # deadlock is the cause and a rank that saw the deadlocked ones exit its consequence.
        waits = (RankExitedError, DeadlockError)
        causes = ({r: e for r, e in errors.items() if not isinstance(e, waits)}
                  or {r: e for r, e in errors.items() if isinstance(e, DeadlockError)} or errors)
        first = min(causes)
        raise RankError(first, world_size, causes) from causes[first]
    return results
