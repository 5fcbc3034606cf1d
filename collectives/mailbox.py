"""The in-process world's post office: one mailbox per rank, matched the way MPI matches.

Each rank has two queues, as inside an MPI library:

    mailbox of rank d    unexpected   messages that arrived before any receive wanted them,
                                      in arrival order
                         posted       receives waiting for a message, in the order posted

    send to d    copy the buffer; give it to the first posted receive of d that matches it,
                 else append it to d's unexpected queue           (sends never block: "eager")
    recv on d    take the first unexpected message that matches, else join the posted queue
                 and wait until a sender hands one over

A receive matches a message of the same communicator with its (source, tag), where
ANY_SOURCE and ANY_TAG match anything. Both queues are scanned from the front, which gives
MPI's ordering rule: messages from one rank with one tag arrive in the order they were sent,
receives are served in the order they were posted, and an ANY_SOURCE receive takes the
earliest arrival. ``probe`` looks at the unexpected queue without taking.

Eager sends mean this world does not catch a program that relies on a large MPI send
blocking (write ring steps with ``sendrecv`` anyway).

It never hangs. A receive (or probe, or waitany) that waits longer than ``timeout`` seconds
raises DeadlockError naming the rank and what it waited for; one that waits on a rank that
has already exited raises RankExitedError at once (for ANY_SOURCE: once every other rank of
its communicator has exited).
"""
import threading
import time
from dataclasses import dataclass

from collectives.comm import ANY_SOURCE, ANY_TAG


class DeadlockError(RuntimeError):
    """A receive waited ``timeout`` seconds for a message that never came."""


class RankExitedError(RuntimeError):
    """A receive waits on a rank (or, for ANY_SOURCE, on ranks) that already returned or raised."""


@dataclass(eq=False)  # compared by identity: list.remove must take this very message
class Message:
    context: tuple       # which communicator (split makes new ones)
    source: int          # the sender's rank in that communicator
    tag: int
    payload: object      # a private copy of the sent array


@dataclass(eq=False)
class Wanted:
    """What a receive or probe accepts; ``message`` is set when a sender hands one over."""

    context: tuple
    source: int          # or ANY_SOURCE
    tag: int             # or ANY_TAG
    message: Message | None = None

    def matches(self, message):
        return (message.context == self.context and self.source in (ANY_SOURCE, message.source)
                and self.tag in (ANY_TAG, message.tag))


class _Mailbox:
    def __init__(self):
        self.unexpected = []   # [Message], arrival order
        self.posted = []       # [Wanted], posting order


def _first(items, accept):
    return next((item for item in items if accept(item)), None)


class World:
    """Everything the ranks of one spawned world share. One lock guards it all."""

    def __init__(self, size, timeout):
        self.timeout = timeout
        self.mailboxes = [_Mailbox() for _ in range(size)]   # index: world rank
        self.changed = threading.Condition()
        self.exited = {}                                     # world rank -> "returned" / "raised X"

    def deliver(self, dest, message):
        with self.changed:
            box = self.mailboxes[dest]
            receive = _first(box.posted, lambda wanted: wanted.matches(message))
            if receive is not None:
                box.posted.remove(receive)
                receive.message = message
            else:
                box.unexpected.append(message)
            self.changed.notify_all()

    def post(self, dest, receive):
        with self.changed:
            box = self.mailboxes[dest]
            message = _first(box.unexpected, receive.matches)
            if message is not None:
                box.unexpected.remove(message)
                receive.message = message
            else:
                box.posted.append(receive)

    def peek(self, dest, wanted):
        """The first unexpected message of ``dest`` that ``wanted`` matches, left in place."""
        with self.changed:
            return _first(self.mailboxes[dest].unexpected, wanted.matches)

    def wait_until(self, ready, senders, waiter):
        """Block until ``ready()`` (called under the lock) is true. ``senders``: the world
        ranks that could make it true; when all have exited, it never will."""
        deadline = time.monotonic() + self.timeout
        with self.changed:
            while not ready():
                gone = [rank for rank in senders if rank in self.exited]
                if len(gone) == len(senders):
                    how = ", ".join(f"rank {rank} has {self.exited[rank]}" for rank in gone)
                    raise RankExitedError(f"{waiter}: {how or 'there is no other rank'} "
                                          "without sending this message")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeadlockError(f"{waiter}: no message after {self.timeout} s - deadlock? "
                                        "(every rank may be waiting on another)")
                self.changed.wait(left)

    def exit(self, rank, how):
        with self.changed:
            self.exited[rank] = how
            self.changed.notify_all()
