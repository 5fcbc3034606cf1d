"""``allreduce(comm, x, algorithm="ring", op="sum")``: one entry point, every algorithm.

    algorithm             module                  time for n bytes on p ranks (algorithms.py)
    "naive"               naive.py                2 (p-1) (alpha + n beta)
    "tree"                tree.py                 2 ceil(log2 p) (alpha + n beta)
    "recursive-doubling"  recursive_doubling.py   log2 p (alpha + n beta)   (p a power of 2)
    "ring"                ring.py                 2 (p-1) alpha + 2 (p-1)/p n beta
    "mpi"                 mpi_library.py          the MPI library's own, the reference to beat
    "auto"                algorithms.py           the fastest of the first four by the cost
                                                  model, for this n, p and ``comm.link``

(reduction terms left out). ``algorithm`` is a name from the table or one of the functions
themselves (``algorithm=ring_allreduce``).

Every algorithm returns the same numbers; integers exactly, floats up to rounding, because
each sums in its own order (``tests/test_collectives.py`` states the tolerance).

CuPy arrays: when the transport can take device buffers (``comm.cuda_aware``), they go to the
algorithms as they are; otherwise the array is copied to the host once, reduced there, and
copied back, so the caller gets a CuPy array either way.
"""
from engine.backend import device_of, to_device, to_numpy

from collectives.algorithms import get_algorithm
from collectives.guard import collective
from collectives.reduction import Op


@collective
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
