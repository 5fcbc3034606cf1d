"""Small, irregular things between ranks (role names, per-communicator counters, a record).

The collectives move arrays whose shape every rank knows. Bookkeeping is not like that: a
server's table of counters has other names than a worker's. These two calls move any
JSON-able value as bytes, in two messages per peer: its length (one int64), then the bytes.

    gather_json(comm, value)     rank 0 gets [value of rank 0, value of rank 1, ...]; others None
    broadcast_json(comm, value)  every rank gets rank 0's value
    agree(comm, problem)         the first rank whose ``problem`` is not None, on every rank

Linear in the number of ranks (rank 0 talks to each rank in turn): for metadata only, and
over the metrics communicator, so training's counters never see it.
"""
import json

import numpy

import collectives
from collectives.tags import Tag


def _encode(value):
    return numpy.frombuffer(json.dumps(value).encode(), numpy.uint8)


def _send(comm, value, dest):
    payload = _encode(value)
    comm.send(numpy.array([payload.size], numpy.int64), dest, Tag.CONTROL)
    comm.send(payload, dest, Tag.CONTROL)


def _recv(comm, source):
    size = numpy.empty(1, numpy.int64)
    comm.recv(size, source, Tag.CONTROL)
    payload = numpy.empty(int(size[0]), numpy.uint8)
    comm.recv(payload, source, Tag.CONTROL)
    return json.loads(payload.tobytes().decode())


def gather_json(comm, value):
    """Every rank's ``value`` on rank 0, as a list by rank; None elsewhere."""
    if comm.rank != 0:
        _send(comm, value, 0)
        return None
    return [value] + [_recv(comm, source) for source in range(1, comm.size)]


def broadcast_json(comm, value):
    """Rank 0's ``value`` on every rank (the others' ``value`` is ignored)."""
    if comm.rank == 0:
        for dest in range(1, comm.size):
            _send(comm, value, dest)
        return value
    return _recv(comm, 0)


def agree(comm, problem):
    """Every rank learns whether any rank has a problem; returns the first such rank, or None.

    One all-reduce of one integer (op min of "my rank if I have a problem, else K"), so a rank
    whose file is missing makes every rank stop, with one message, instead of leaving the others
    waiting in their first all-reduce."""
    mine = numpy.array([comm.rank if problem else comm.size], numpy.int64)
    first = int(collectives.allreduce(comm, mine, "tree", "min", check=False)[0])
    return None if first == comm.size else first
