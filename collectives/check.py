"""The consistency check: every rank must call the same collective on the same kind of array.

MPI itself does not check this. If rank 0 passes 10 float64 and rank 1 passes 12, a ring
all-reduce either hangs (a receive waits for bytes that never come) or silently adds garbage.
So before the real work each rank sends a small descriptor of its call to every other rank:

    [number of elements, dtype kind, itemsize, hash of the shape, hash of (collective, op, root)]

and compares the p descriptors it now holds. Byte order needs no field: every collective gets
its array in native order (guard.py converts a byte-swapped one), so kind and itemsize are the
dtype. They are the same p descriptors on every rank,
so either every rank passes or every rank raises the same ValueError - no rank is left waiting.

Cost: p - 1 messages of 40 bytes sent and received per rank, all in flight at once:
about alpha + (p - 1) * 40 * beta. Pass ``check=False`` to any collective to skip it
(the benchmarks do, to time the algorithm alone). Its messages use a tag of their own, Tag.CHECK.
"""
import zlib

import numpy

from collectives.tags import Tag


def describe(x, call):
    """This rank's descriptor (int64[5]) of ``call`` (a string like "ring_allreduce op=sum")."""
    return numpy.array([x.size, ord(x.dtype.kind), x.dtype.itemsize,
                        hash(tuple(x.shape)) & 0x7FFF_FFFF_FFFF_FFFF,
                        zlib.crc32(call.encode())], numpy.int64)


def check_same(comm, x, call):
    """Raise ValueError on every rank unless every rank passed the same call, size, dtype, shape."""
    mine = describe(x, call)
    table = numpy.empty((comm.size, mine.size), numpy.int64)
    table[comm.rank] = mine
    sends = [comm.isend(mine, peer, Tag.CHECK) for peer in range(comm.size) if peer != comm.rank]
    recvs = [comm.irecv(table[peer], peer, Tag.CHECK) for peer in range(comm.size)
             if peer != comm.rank]
    comm.waitall(sends + recvs)
    if (table == table[0]).all():
        return
    names = {0: "number of elements", 1: "dtype", 2: "dtype", 3: "shape",
             4: "collective or op"}
    differ = sorted({names[j] for j in range(mine.size) if (table[:, j] != table[0, j]).any()})
    per_rank = ", ".join(f"rank {r}: {n} x {numpy.dtype(chr(k) + str(s))}"
                         for r, (n, k, s, *_) in enumerate(table.tolist()))
    raise ValueError(f"{call}: ranks disagree on the {' and '.join(differ)} ({per_rank}); "
                     f"this is rank {comm.rank} with shape {x.shape}")
