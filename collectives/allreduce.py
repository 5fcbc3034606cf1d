"""``allreduce(comm, x, algorithm="ring", op="sum")``: one entry point, every algorithm.

    algorithm             module                  time for n bytes on p ranks (costmodel.py)
    "naive"               naive.py                2 (p-1) (alpha + n beta)
    "tree"                tree.py                 2 ceil(log2 p) (alpha + n beta)
    "recursive_doubling"  recursive_doubling.py   log2 p (alpha + n beta)   (p a power of 2)
    "ring"                ring.py                 2 (p-1) alpha + 2 (p-1)/p n beta
    "mpi"                 the MPI library's own Allreduce, the reference to check and beat

(reduction terms left out; see each module). ``algorithm`` is a name from the table or one of
the functions themselves (``algorithm=ring_allreduce``).

Every algorithm returns the same numbers; integers exactly, floats up to rounding, because
each sums in its own order (``tests/test_collectives.py`` states the tolerance).

CuPy arrays: when the transport can take device buffers (``comm.cuda_aware``), they go to the
algorithms as they are; otherwise the array is copied to the host once, reduced there, and
copied back, so the caller gets a CuPy array either way.
"""
from engine.backend import device_of, to_device, to_numpy

from collectives.check import check_same
from collectives.naive import naive_allreduce
from collectives.reduction import Op, finish, result_buffer
from collectives.recursive_doubling import recursive_doubling_allreduce
from collectives.ring import ring_allreduce
from collectives.tree import tree_allreduce


def mpi_allreduce(comm, x, op=Op.SUM, *, out=None, check=True):
    """The MPI library's Allreduce (only under mpirun: the in-process world has no library)."""
    op = Op(op)
    if not hasattr(comm, "library_allreduce"):
        raise NotImplementedError(f"{type(comm).__name__} has no MPI library Allreduce; "
                                  "use a hand-written algorithm or run under mpirun")
    if check:
        check_same(comm, x, f"mpi_allreduce op={op.value}")
    buf = result_buffer(x, out)                                   # (n,)
    comm.library_allreduce(buf, "sum" if op is Op.MEAN else op.value)
    return finish(buf, op, comm.size, x.shape, out)


ALGORITHMS = {
    "naive": naive_allreduce,
    "tree": tree_allreduce,
    "recursive_doubling": recursive_doubling_allreduce,
    "ring": ring_allreduce,
    "mpi": mpi_allreduce,
}


def get_algorithm(algorithm):
    """The all-reduce function for a name in ALGORITHMS, or the function itself."""
    if callable(algorithm):
        return algorithm
    try:
        return ALGORITHMS[algorithm]
    except KeyError:
        raise ValueError(f"unknown all-reduce algorithm {algorithm!r}: "
                         f"choose one of {sorted(ALGORITHMS)}") from None


def allreduce(comm, x, algorithm="ring", op=Op.SUM, *, out=None, check=True):
    """x_0 (op) x_1 (op) ... (op) x_{p-1}, elementwise, on every rank.

    x: any shape and numeric dtype, the same on every rank (``check=True`` verifies it and
    raises ValueError on every rank otherwise). op: "sum", "mean", "max", "min" (or Op).
    Returns a new array; ``out=`` receives the result instead (``out=x`` for in place).
    """
    fn = get_algorithm(algorithm)
    if device_of(x) == "cuda" and not comm.cuda_aware:  # stage through host memory
        result = to_device(fn(comm, to_numpy(x), op, check=check), "cuda")
        if out is None:
            return result
        out[...] = result
        return out
    return fn(comm, x, op, out=out, check=check)
