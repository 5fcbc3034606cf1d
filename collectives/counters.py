"""Counters of messages and bytes, per communicator, rolled up into the parent communicator.

Every counted send or receive adds to the counters of the comm it was made on AND of every
ancestor it was split from with ``counted=True``, so the world's counters are the rank's
whole traffic and a sub-communicator's are its share:

    world                                            world.traffic() ==
      +-- dp = world.split(..., name="dp")             {"world":  everything this rank moved,
      |     +-- bucket = dp.split(..., name="bucket")   "world/dp": what went over dp (and bucket),
      +-- metrics = world.split(..., counted=False)     "world/dp/bucket": ...}
            (counts on itself only: in no traffic() of the world)

A sub-comm's counts are therefore included in its parent's, never added twice. Counts are
payload bytes (no headers), made when a receive is posted (or, for ANY_SOURCE, when it
completes). This is the bookkeeping half of comm.Comm; it knows nothing about messages.
"""
from dataclasses import asdict, dataclass


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

    def add(self, direction, nbytes):
        """One message of ``nbytes`` in ``direction`` "sent" or "received"."""
        if direction == "sent":
            self.messages_sent += 1
            self.bytes_sent += nbytes
        else:
            self.messages_received += 1
            self.bytes_received += nbytes


class CounterTree:
    """A node of the tree above: ``name``, ``counters``, counted children, one parent."""

    def __init__(self, name):
        self.name = name
        self.counters = Counters()
        self._parent = None      # the comm this one rolls up into (None: a root)
        self._children = []      # the comms that roll up into this one

    def adopt(self, child):
        """From now on ``child``'s traffic also counts here (and in our ancestors)."""
        child._parent = self
        self._children.append(child)

    def count(self, direction, nbytes):
        node = self
        while node is not None:
            node.counters.add(direction, nbytes)
            node = node._parent

    def traffic(self):
        """{name path: counters as a dict} for this comm and its counted descendants; siblings
        with the same name are summed into one row ("world/dp" for every dp split made)."""
        table = {}
        pending = [(self.name, self)]
        while pending:  # a stack, not recursion: communicator trees can be deep
            path, node = pending.pop()
            row = table.setdefault(path, dict.fromkeys(asdict(node.counters), 0))
            for field, value in asdict(node.counters).items():
                row[field] += value
            pending.extend((f"{path}/{child.name}", child) for child in node._children)
        return dict(sorted(table.items()))

    def reset_counters(self):
        """Zero this comm's counters and its counted descendants' (the parent keeps its own)."""
        pending = [self]
        while pending:
            node = pending.pop()
            node.counters.reset()
            pending.extend(node._children)
