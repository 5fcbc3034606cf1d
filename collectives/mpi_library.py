"""The MPI library's own Allreduce, as an algorithm like the others: the reference to beat.

    allreduce(comm, x, "mpi")     ->   MPI_Allreduce(MPI_IN_PLACE, buf, ...) on every rank

Only under mpirun (the in-process world has no library). Its messages are the library's, so
``comm.counters`` never see them. Inside, MPICH picks an algorithm by message size and
communicator size (recursive doubling for short messages, reduce-scatter + all-gather for
long ones): what ``algorithm="auto"`` does in the open (algorithms.py).
"""
from collectives.check import check_same
from collectives.guard import collective
from collectives.reduction import Op, finish, result_buffer


@collective
def mpi_allreduce(comm, x, op=Op.SUM, *, out=None, check=True):
    """The MPI library's Allreduce of x; same contract as every hand-written all-reduce."""
    op = Op(op)
    if not hasattr(comm, "library_allreduce"):
        raise NotImplementedError(f"{type(comm).__name__} has no MPI library Allreduce; "
                                  "use a hand-written algorithm or run under mpirun")
    if check:
        check_same(comm, x, f"mpi_allreduce op={op.value}")
    buf = result_buffer(x, out)                                   # (n,)
    comm.library_allreduce(buf, "sum" if op is Op.MEAN else op.value)
    return finish(buf, op, comm.size, x.shape, out)
