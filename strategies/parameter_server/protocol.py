"""The messages of the parameter server (MATH A2): a push and its reply, each a header + a block.

    worker k  (holds theta, version v_j of each block)        server j  (owns block j, version V)
    ---------------------------------------------------       ------------------------------------
    isend [v_j]              int64, Tag.CONTROL    ----->   recv header from ANY_SOURCE -> k
    isend g[lo_j:hi_j]       n_j bytes, Tag.GRADIENT ---->  recv the block from k (status.source)
                                                            ... sync: once the step's pushes are
                                                            in; async: now; SSP: now, reply maybe
                                                            deferred
    recv [V']                int64, Tag.CONTROL    <-----   send [V]    the version it sends
    recv theta[lo_j:hi_j]    n_j bytes, Tag.PARAMETERS <-   send theta_j

Every push carries the version of the block the gradient was computed on, so the server knows
its staleness tau = V - v_j (0 under sync SGD); every reply carries the version it answers
with. Receiving the header from ANY_SOURCE and then the block from ``status.source`` keeps
the two messages of one push together: messages of one (source, tag) arrive in order.

Bytes (HEADER_BYTES = 8, one int64; n_j = bytes of block j; n = sum_j n_j):
    one push to server j     8 + n_j             one reply          8 + n_j
    a worker per step        n + 8 S             (S pushes; it sends no reply)
    server j per step        W (n_j + 8)         (W replies; it receives W pushes as much)
The pushes are non-blocking: a worker that blocked in its push to server 1 while server 0
blocked in its reply to that worker would be a cycle of rendezvous sends under MPI.
"""
import numpy

from collectives import ANY_SOURCE
from collectives.tags import Tag

HEADER_BYTES = 8   # one int64: a version


def push(comm, server, version, block):
    """Start the push of ``block`` (computed on ``version``) to ``server``; returns the two
    requests and the header array (both buffers must live until the requests complete)."""
    header = numpy.array([version], numpy.int64)
    return [comm.isend(header, server, Tag.CONTROL), comm.isend(block, server, Tag.GRADIENT)], header


def receive_header(comm):
    """A server waits for the next push from any worker -> (worker, version)."""
    header = numpy.empty(1, numpy.int64)
    status = comm.recv(header, ANY_SOURCE, Tag.CONTROL)
    return status.source, int(header[0])


def receive_block(comm, worker, out):
    """The gradient block of ``worker``'s push, into ``out`` (after its header)."""
    comm.recv(out, worker, Tag.GRADIENT)
    return out


def reply(comm, worker, version, block):
    """Answer ``worker`` with ``block`` of theta at ``version``: header, then the block."""
    comm.send(numpy.array([version], numpy.int64), worker, Tag.CONTROL)
    comm.send(block, worker, Tag.PARAMETERS)


def receive_reply_header(comm, server):
    """A worker waits for ``server``'s answer -> the version it answers with."""
    header = numpy.empty(1, numpy.int64)
    comm.recv(header, server, Tag.CONTROL)
    return int(header[0])


def receive_reply_block(comm, server, out):
    """theta's block from ``server`` into ``out`` (a contiguous slice of the worker's theta)."""
    comm.recv(out, server, Tag.PARAMETERS)
