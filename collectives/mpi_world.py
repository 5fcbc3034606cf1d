"""The MPI world: ``collectives.world()`` wraps mpi4py's COMM_WORLD in the Comm interface.

    mpirun -n 4 python -m mpi4py my_script.py       # python -m mpi4py: one failing rank aborts all

    comm = collectives.world()
    comm.rank, comm.size
    comm.sendrecv(chunk, comm.rank + 1, incoming, comm.rank - 1)

Only the buffer-based calls (``Send``, ``Recv``, ``Sendrecv``, ``Isend``, ``Irecv``, and
``Probe``, ``Iprobe``, ``Request.Waitany``, which move nothing) are used,
never the pickling lower-case ones: an array travels as its raw bytes (``[buf, MPI.BYTE]``),
with no copy and no serialisation. mpi4py is imported here, lazily, so that importing
``collectives`` (e.g. in a notebook using the in-process world) never initialises MPI.

CuPy buffers. A CUDA-aware MPI reads device memory itself: we synchronise the current stream
(so the kernels that wrote the buffer have finished) and hand the CuPy array over directly.
Other MPIs cannot, so ``cuda_aware`` is False and the collectives stage the whole array
through host memory once (allreduce.py), returning a CuPy array either way.

Every blocking call is ``@watched``: ``collectives.set_timeout(s)`` aborts the job when one
lasts longer than s seconds (watchdog.py).
"""
import numpy

from collectives.comm import ANY_SOURCE, ANY_TAG, Comm, Status, describe_receive, on_gpu
from collectives.watchdog import watched


_MPI = None


def _mpi():
    """mpi4py's MPI module, imported on first use and kept (every message needs it: an import
    statement per call cost a quarter of a small sendrecv's time)."""
    global _MPI
    if _MPI is None:
        from mpi4py import MPI
        _MPI = MPI
    return _MPI


def world():
    """A new MPIComm over COMM_WORLD (counters start at zero for each wrapper you make)."""
    return MPIComm(_mpi().COMM_WORLD)


def mpi_is_cuda_aware():
    """True when this MPI library can read and write GPU memory itself (MPI 4.1 query)."""
    query = getattr(_mpi(), "Query_cuda_support", None)  # absent from older mpi4py / MPIs
    return bool(query and query())


def _buffer(buf):
    """The mpi4py buffer spec for ``buf``'s raw bytes; a GPU buffer's stream is synchronised."""
    if type(buf) is not numpy.ndarray and on_gpu(buf):   # the type test first: it is per message
        import cupy
        cupy.cuda.get_current_stream().synchronize()
    return [buf, _mpi().BYTE]


def _wildcards(source, tag):
    """Our ANY_SOURCE / ANY_TAG as this MPI library spells them."""
    MPI = _mpi()
    return (MPI.ANY_SOURCE if source == ANY_SOURCE else source,
            MPI.ANY_TAG if tag == ANY_TAG else tag)


def _received(comm, status, buf, source, tag):
    """The Status of a completed receive. MPI accepts a message shorter than the receive
    buffer and leaves the rest untouched: a size mismatch between ranks would become a
    silently wrong result. Make it an error, as the in-process world does."""
    count = status.Get_count(_mpi().BYTE)
    got = Status(status.Get_source(), status.Get_tag(), count)
    if count != buf.nbytes:
        receive = describe_receive("recv", source, tag, buf.nbytes)
        raise ValueError(f"rank {comm.rank} of {comm.size}: {receive}: the message has "
                         f"{count} B (from rank {got.source}, tag {got.tag})")
    return got


def _describe_send(call, dest, tag, nbytes):
    """``send(dest=1, tag=..., 40 B)``: a send, for the watchdog."""
    return f"{call}(dest={dest}, tag={int(tag)}, {nbytes} B)"


class _Pending:
    """An mpi4py request; for a receive, ``check(status) -> Status`` makes our Status.
    ``what``: (_describe_send or describe_receive, call, peer, tag, nbytes), for the watchdog."""

    def __init__(self, request, comm, what, check=None):
        self.request, self._check = request, check
        self.comm, self.what = comm, what
        self.mpi_status = _mpi().Status()
        self._done, self._status = False, None

    def finish(self):  # the request has completed into self.mpi_status
        self._done = True
        if self._check is not None:
            self._status = self._check(self.mpi_status)

    def describe(self):
        describe, *args = self.what
        return describe(*args)

    @watched(lambda pending: (pending.comm, f"wait({pending.describe()})"))
    def wait(self):
        if not self._done:
            self.request.Wait(self.mpi_status)
            self.finish()
        return self._status

    def test(self):
        if not self._done and self.request.Test(self.mpi_status):
            self.finish()
        return self._done


class MPIComm(Comm):
    """The Comm interface on an mpi4py communicator (COMM_WORLD or one made by ``split``)."""

    def __init__(self, mpi_comm, name="world"):
        super().__init__(name)
        self.mpi_comm = mpi_comm
        self.rank = mpi_comm.Get_rank()
        self.size = mpi_comm.Get_size()
        self.cuda_aware = mpi_is_cuda_aware()
        world = _mpi().COMM_WORLD   # the watchdog names the rank in the job
        self.world_rank, self.world_size = world.Get_rank(), world.Get_size()

    @watched(lambda comm, buf, dest, tag: (comm, _describe_send("send", dest, tag, buf.nbytes)))
    def _send(self, buf, dest, tag):
        self.mpi_comm.Send(_buffer(buf), dest, tag)

    @watched(lambda comm, buf, source, tag:
             (comm, describe_receive("recv", source, tag, buf.nbytes)))
    def _recv(self, buf, source, tag):
        status = _mpi().Status()
        self.mpi_comm.Recv(_buffer(buf), *_wildcards(source, tag), status)
        return _received(self, status, buf, source, tag)

    @watched(lambda comm, sendbuf, dest, recvbuf, source, tag:
             (comm, f"sendrecv(dest={dest}, source={source}, tag={int(tag)})"))
    def _sendrecv(self, sendbuf, dest, recvbuf, source, tag):
        status = _mpi().Status()
        self.mpi_comm.Sendrecv(_buffer(sendbuf), dest, tag, _buffer(recvbuf),
                               *_wildcards(source, tag), status)
        return _received(self, status, recvbuf, source, tag)

    def _isend(self, buf, dest, tag):
        return _Pending(self.mpi_comm.Isend(_buffer(buf), dest, tag),
                        self, (_describe_send, "isend", dest, tag, buf.nbytes))

    def _irecv(self, buf, source, tag):
        return _Pending(self.mpi_comm.Irecv(_buffer(buf), *_wildcards(source, tag)),
                        self, (describe_receive, "irecv", source, tag, buf.nbytes),
                        lambda status: _received(self, status, buf, source, tag))

    @watched(lambda comm, source, tag, block:
             (comm, describe_receive("probe" if block else "iprobe", source, tag)))
    def _probe(self, source, tag, block):
        status = _mpi().Status()
        if block:
            self.mpi_comm.Probe(*_wildcards(source, tag), status)
        elif not self.mpi_comm.Iprobe(*_wildcards(source, tag), status):
            return None
        return Status(status.Get_source(), status.Get_tag(), status.Get_count(_mpi().BYTE))

    @watched(lambda comm, pendings:
             (comm, f"waitany([{', '.join(p.describe() for p in pendings)}])"))
    def _wait_any(self, pendings):
        status = _mpi().Status()
        index = _mpi().Request.Waitany([p.request for p in pendings], status)
        pendings[index].mpi_status = status  # Waitany filled this one, not the request's own
        pendings[index].finish()
        return index

    @watched(lambda comm: (comm, "barrier()"))
    def barrier(self):
        self.mpi_comm.Barrier()  # the library's: used only to line ranks up for timing

    @watched(lambda comm, color, key: (comm, f"split(color={color}, key={key})"))
    def _split(self, color, key):
        MPI = _mpi()
        sub = self.mpi_comm.Split(MPI.UNDEFINED if color is None else color, key)
        return None if sub == MPI.COMM_NULL else MPIComm(sub)

    @watched(lambda comm, buf, op_name: (comm, f"library_allreduce(op={op_name}, {buf.nbytes} B)"))
    def library_allreduce(self, buf, op_name):
        """MPI's own Allreduce, in place on ``buf`` (the reference the benchmark compares to)."""
        MPI = _mpi()
        if on_gpu(buf) and not self.cuda_aware:
            raise TypeError("library_allreduce got a CuPy array but MPI is not CUDA-aware")
        if on_gpu(buf):
            import cupy
            cupy.cuda.get_current_stream().synchronize()
        mpi_op = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op_name]
        self.mpi_comm.Allreduce(MPI.IN_PLACE, buf, op=mpi_op)
