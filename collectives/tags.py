"""Every message tag in one registry: what a message is for, by name instead of by number.

A receive names a (source, tag) pair and takes only messages that carry both, so two
conversations between the same ranks never mix as long as they use different tags:

    comm.send(grad, server, tag=Tag.GRADIENT)           # a worker pushes a gradient
    comm.recv(theta, server, tag=Tag.PARAMETERS)        # and pulls the new parameters
    status = comm.recv(grad, ANY_SOURCE, Tag.GRADIENT)  # the server takes whoever is first

Tags are small non-negative integers (MPI guarantees 0 .. 32767). The collectives send their
data with Tag.DATA; the library's own bookkeeping uses tags far above the others, so a user
tag never collides with a barrier or a consistency check. ``ANY_TAG`` (comm.py) matches
every tag, the library's too, exactly as in MPI.
"""
import enum


class Tag(enum.IntEnum):
    # -- what the collectives and user code send ------------------------------------------
    DATA = 0               # the payload of a collective (ring chunks, tree arrays, ...)
    GRADIENT = 1           # a worker's gradient, e.g. pushed to a parameter server
    PARAMETERS = 2         # parameters, e.g. pulled from a parameter server or gossiped
    ACTIVATION = 3         # a pipeline stage's output, sent forward to the next stage
    ACTIVATION_GRAD = 4    # d loss / d activation, sent backward to the previous stage
    CONTROL = 5            # small protocol messages: "step done", "stop", a request id
    GOSSIP = 6             # a neighbour's parameters in gossip averaging
    # -- the library's own bookkeeping (never data) ---------------------------------------
    BARRIER = 30001        # the dissemination barrier's empty messages
    CHECK = 30002          # check.py's descriptors: same collective on every rank?
    SPLIT = 30003          # (color, key) pairs exchanged by split in the in-process world


TAG_MAX = 32767  # the largest tag every MPI must accept (MPI_TAG_UB is at least this)

