"""The in-process world: p ranks as p threads exchanging messages through shared mailboxes.

    results = collectives.spawn(lambda comm: ring_allreduce(comm, x[comm.rank]), world_size=4)

runs the function once per rank, each with its own ThreadComm, and returns the list of the
ranks' results (index = rank). Notebooks use it to show 4 ranks step by step, unit tests use
it to run every algorithm without mpirun. The algorithms cannot tell the difference.

How a message travels. Each (context, source, dest, tag) is a *channel*: a numbered sequence
of messages. ``send`` copies the buffer into the channel as message number k (sends never
block: "eager", like MPI for small messages; so this world does not catch a program that
relies on a large MPI send blocking - write ring steps with ``sendrecv`` anyway). Every receive
posted on a channel takes the next ticket k and waits for message number k, so messages match
in order, as in MPI.

It never hangs. A receive that waits longer than ``timeout`` seconds raises DeadlockError
naming the rank and the receive it was waiting for; one that waits on a rank which has already
exited raises RankExitedError at once. ``spawn`` then raises RankError naming the rank whose
exception started it all (the original exception is its ``__cause__``; every failing rank's
exception is in ``.errors``).
"""
import itertools
import threading
import time
from collections import defaultdict

import numpy

from collectives.comm import SPLIT_TAG, Comm


class DeadlockError(RuntimeError):
    """A receive waited ``timeout`` seconds for a message that never came."""


class RankExitedError(RuntimeError):
    """A receive waits on a rank that has already returned or raised."""


class RankError(RuntimeError):
    """Raised by spawn: rank ``rank`` raised ``errors[rank]`` (see ``errors`` for all ranks)."""

    def __init__(self, rank, size, errors):
        self.rank, self.errors = rank, errors
        first = errors[rank]
        others = sorted(set(errors) - {rank})
        also = f" (ranks {others} failed too)" if others else ""
        super().__init__(f"rank {rank} of {size} raised {type(first).__name__}: {first}{also}")


class _Mailboxes:
    """Everything the ranks of one spawned world share. One lock guards it all."""

    def __init__(self, size, timeout):
        self.size, self.timeout = size, timeout
        self.changed = threading.Condition()
        self.arrived = defaultdict(dict)       # channel -> {message number: payload}
        self.sent = defaultdict(int)           # channel -> messages sent so far
        self.posted = defaultdict(int)         # channel -> receives posted so far
        self.exited = {}                       # world rank -> "returned" / "raised ValueError"

    def put(self, channel, payload):
        with self.changed:
            self.arrived[channel][self.sent[channel]] = payload
            self.sent[channel] += 1
            self.changed.notify_all()

    def ticket(self, channel):
        with self.changed:
            self.posted[channel] += 1
            return self.posted[channel] - 1

    def take(self, channel, ticket, waiter):
        """Wait for message number ``ticket`` on ``channel``; ``waiter`` describes the receive."""
        source = channel[1]
        deadline = time.monotonic() + self.timeout
        with self.changed:
            while ticket not in self.arrived[channel]:
                if source in self.exited:
                    raise RankExitedError(f"{waiter}: rank {source} has {self.exited[source]} "
                                          "without sending this message")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeadlockError(f"{waiter}: no message after {self.timeout} s - deadlock? "
                                        "(every rank may be waiting on another)")
                self.changed.wait(left)
            return self.arrived[channel].pop(ticket)

    def exit(self, rank, how):
        with self.changed:
            self.exited[rank] = how
            self.changed.notify_all()


class _Request:
    def __init__(self, finish=None):
        self._finish = finish

    def wait(self):
        if self._finish is not None:
            self._finish()
            self._finish = None


class ThreadComm(Comm):
    """One rank of an in-process world; ``group`` maps this comm's ranks to world ranks."""

    cuda_aware = True  # payloads are array copies, on whichever device the array lives

    def __init__(self, mailboxes, context, group, rank):
        super().__init__()
        self._mail, self._context, self._group = mailboxes, context, group
        self.rank, self.size = rank, len(group)
        self._splits = itertools.count()

    def _channel(self, source, dest, tag):
        return (self._context, self._group[source], self._group[dest], tag)

    def _send(self, buf, dest, tag):
        self._mail.put(self._channel(self.rank, dest, tag), buf.copy())

    def _irecv(self, buf, source, tag):
        channel = self._channel(source, self.rank, tag)
        ticket = self._mail.ticket(channel)
        waiter = (f"rank {self.rank} of {self.size}: "
                  f"recv(source={source}, tag={tag}, {buf.nbytes} B)")

        def finish():
            payload = self._mail.take(channel, ticket, waiter)
            if payload.nbytes != buf.nbytes:
                raise ValueError(f"{waiter}: the message has {payload.nbytes} B")
            buf.reshape(-1).view(numpy.uint8)[...] = payload.reshape(-1).view(numpy.uint8)
        return _Request(finish)

    def _recv(self, buf, source, tag):
        self._irecv(buf, source, tag).wait()

    def _isend(self, buf, dest, tag):
        self._send(buf, dest, tag)  # eager: already delivered
        return _Request()

    def _sendrecv(self, sendbuf, dest, recvbuf, source, tag):
        self._send(sendbuf, dest, tag)
        self._recv(recvbuf, source, tag)

    def split(self, color, key=0):
        """Every rank sends (color, key) to every rank; members are ordered by (key, rank)."""
        mine = numpy.array([-1 if color is None else color, key], numpy.int64)
        for peer in range(self.size):
            self._send(mine, peer, SPLIT_TAG)
        table = numpy.empty((self.size, 2), numpy.int64)
        for peer in range(self.size):
            self._recv(table[peer], peer, SPLIT_TAG)
        number = next(self._splits)  # same on every rank: split is collective
        if color is None:
            return None
        members = sorted((k, r) for r, (c, k) in enumerate(table.tolist()) if c == color)
        ranks = [r for _, r in members]
        return ThreadComm(self._mail, (self._context, number, color),
                          tuple(self._group[r] for r in ranks), ranks.index(self.rank))


def spawn(fn, world_size, timeout=30.0):
    """Run ``fn(comm)`` on ``world_size`` threads, one per rank; return their results by rank.

    ``timeout`` bounds every single receive (seconds): a deadlock becomes a DeadlockError.
    If any rank raises, RankError is raised here, naming that rank.
    """
    mail = _Mailboxes(world_size, timeout)
    group = tuple(range(world_size))
    results, errors = [None] * world_size, {}

    def run(rank):
        try:
            results[rank] = fn(ThreadComm(mail, (), group, rank))
        except BaseException as exc:  # noqa: BLE001 - reported below, with the rank named
            errors[rank] = exc
            mail.exit(rank, f"raised {type(exc).__name__}")
        else:
            mail.exit(rank, "returned")

    threads = [threading.Thread(target=run, args=(rank,), name=f"rank {rank}", daemon=True)
               for rank in range(world_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        # Ranks that only failed because another rank exited are consequences, not causes.
        causes = {r: e for r, e in errors.items() if not isinstance(e, RankExitedError)} or errors
        first = min(causes)
        raise RankError(first, world_size, causes) from causes[first]
    return results
