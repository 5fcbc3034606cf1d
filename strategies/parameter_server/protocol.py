"""The messages of the parameter server (MATH A2): a push and its reply, each a header + a block.

    worker k  (holds theta, version v_j of each block)        server j  (owns block j, version V)
    ---------------------------------------------------       ------------------------------------
    isend [v_j, c]           2 int64, Tag.CONTROL  ----->   recv header from ANY_SOURCE -> k
    isend g[lo_j:hi_j]       n_j bytes, Tag.GRADIENT ---->  recv the block from k (status.source)
                                                            ... sync: once the step's pushes are
                                                            in; async: now; SSP: now, reply maybe
                                                            deferred
    recv [V', c']            2 int64, Tag.CONTROL  <-----   send [V, next chunk]
    recv theta[lo_j:hi_j]    n_j bytes, Tag.PARAMETERS <-   send theta_j

    ... and once server 0 answered c' = NONE_LEFT, to every server j > 0:
    send [v_j, NONE_LEFT]    2 int64, Tag.CONTROL  ----->   k has left the epoch (no block)

Every push carries the version of the block the gradient was computed on, so the server knows
its staleness tau = V - v_j (0 under sync SGD), and the chunk it was computed on
(schedule.py); every reply carries the version it answers with and, from server 0, the chunk
the worker computes next (servers j > 0 send NONE_LEFT there, and the worker reads only
server 0's). Receiving the header from ANY_SOURCE and then the block from ``status.source``
keeps the two messages of one push together: messages of one (source, tag) arrive in order.

Bytes (HEADER_BYTES = 16, two int64; n_j = bytes of block j; n = sum_j n_j):
    one push to server j     16 + n_j            one reply          16 + n_j
    a worker per push        n + 16 S            per epoch, leaving: 16 (S - 1)
    server j per push        n_j + 16            (one reply per push it receives)
The pushes are non-blocking: a worker that blocked in its push to server 1 while server 0
blocked in its reply to that worker would be a cycle of rendezvous sends under MPI.
"""
import numpy

from collectives import ANY_SOURCE
from collectives.tags import Tag
from strategies.parameter_server.schedule import NONE_LEFT

HEADER_BYTES = 16   # two int64: a version and a chunk


def _header(version, chunk):
    return numpy.array([version, chunk], numpy.int64)


def push(comm, server, version, chunk, block):
    """Start the push of ``block`` (computed on ``version``, rows of ``chunk``) to ``server``;
    returns the two requests and the header (both buffers must live until they complete)."""
    header = _header(version, chunk)
    return [comm.isend(header, server, Tag.CONTROL), comm.isend(block, server, Tag.GRADIENT)], header


def leave(comm, server, version):
    """Tell ``server`` this worker has left the epoch: a header with chunk NONE_LEFT, no block."""
    comm.send(_header(version, NONE_LEFT), server, Tag.CONTROL)


def receive_header(comm):
    """A server waits for the next header from any worker -> (worker, version, chunk)."""
    header = numpy.empty(2, numpy.int64)
    status = comm.recv(header, ANY_SOURCE, Tag.CONTROL)
    return status.source, int(header[0]), int(header[1])


def receive_block(comm, worker, out):
    """The gradient block of ``worker``'s push, into ``out`` (after its header)."""
    comm.recv(out, worker, Tag.GRADIENT)
    return out


def reply(comm, worker, version, chunk, block):
    """Answer ``worker`` with ``block`` of theta at ``version`` and its next ``chunk``."""
    comm.send(_header(version, chunk), worker, Tag.CONTROL)
    comm.send(block, worker, Tag.PARAMETERS)


def receive_reply_header(comm, server):
    """A worker waits for ``server``'s answer -> (version, next chunk)."""
    header = numpy.empty(2, numpy.int64)
    comm.recv(header, server, Tag.CONTROL)
    return int(header[0]), int(header[1])


def receive_reply_block(comm, server, out):
    """theta's block from ``server`` into ``out`` (a contiguous slice of the worker's theta)."""
    comm.recv(out, server, Tag.PARAMETERS)
