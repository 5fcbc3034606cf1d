"""How many threads a rank's BLAS uses, chosen at run time (``engine.process`` calls this).

``mpirun -n 4`` on a 2-core machine already runs two ranks per core; if each rank's BLAS
(OpenBLAS, MKL: the library behind ``numpy.matmul``) also started one thread per core, the
threads would fight for the cores and every rank would slow down. Ranks run as threads of
one process (collectives' in-process world) share one BLAS: with one BLAS thread per core,
K thread-ranks start K x cores threads that spin waiting for each other (on 2 cores, steps
ran 100x slower). So in both cases a rank wants one BLAS thread.

The limit is set after NumPy has loaded its BLAS, with threadpoolctl, which calls the
library's own setter (``openblas_set_num_threads``, ``MKL_Set_Num_Threads``); nothing is
written to the environment, and it works whatever was imported first. A user who set
``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``) has chosen: the
library read that when it loaded, and ``configure_process`` leaves it alone, e.g.
``mpirun -n 2 -genv OMP_NUM_THREADS 2 python ...``.

Outside mpirun nothing is changed: BLAS uses every core, which the big matrix products of
an MLP step use well. The engine's own Numba kernels (engine/kernels/cpu.py) run on one
thread whatever is set here: on the 2-core machine we measured (with other jobs keeping
the load near 2), a ``parallel=True`` build made the LeNet-5 step slower (median 16 ms
against 4.7 ms), because Numba's OpenMP threads and OpenBLAS's threads, each pool as large
as the machine, took the cores from each other.
"""
import os

# Set by the process managers of MPICH/Hydra and srun --mpi=pmi2 (PMI_RANK), Open MPI
# (OMPI_COMM_WORLD_RANK) and PMIx launchers. Not SLURM_PROCID: a plain batch script has it too.
MPI_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def launched_by_mpi(environ=os.environ):
    """True when this process is a rank started by an MPI launcher."""
    return any(name in environ for name in MPI_RANK_VARIABLES)


def user_chose_threads(environ=os.environ):
    """The thread-count variable the user set (the first found), or None."""
    return next((name for name in THREAD_VARIABLES if name in environ), None)


def threads_per_rank(ranks_in_process=1, environ=os.environ):
    """(BLAS threads this process should get, or None to leave them, and why):

        ranks_in_process > 1          1   the thread-ranks share one BLAS (forced)
        under mpirun, user chose      None  the user's variable already applies
        under mpirun                  1   one thread per rank
        otherwise                     None  BLAS keeps one thread per core
    """
    if ranks_in_process > 1:
        return 1, f"{ranks_in_process} ranks run as threads of this process"
    if launched_by_mpi(environ):
        chosen = user_chose_threads(environ)
        if chosen:
            return None, f"under mpirun, {chosen}={environ[chosen]} set by the user"
        return 1, "one BLAS thread per MPI rank"
    return None, "not under mpirun: BLAS keeps its default"


def set_blas_threads(n):
    """Give NumPy's BLAS ``n`` threads now (threadpoolctl); returns the previous count, or
    None when no BLAS library was found. Lasts until changed again; ``n=None`` changes nothing
    (so ``set_blas_threads(previous)`` restores even when there was no count to restore)."""
    import numpy  # noqa: F401  (loads the BLAS, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_limits
    previous = blas_threads()
    if n is not None:
        threadpool_limits(limits=int(n), user_api="blas")
    return previous


def limit_threads(n):
    """Limit every thread pool already loaded (BLAS and OpenMP) to ``n`` threads."""
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=int(n))


def blas_threads():
    """The number of threads NumPy's BLAS uses now (None: no BLAS found)."""
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    return blas[0]["num_threads"] if blas else None


def blas_library():
    """What threadpoolctl reports of NumPy's BLAS: "openblas 0.3.27 (pthreads)" or "unknown"."""
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_info
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    if not blas:
        return "unknown"
    return f"{blas[0]['internal_api']} {blas[0].get('version')} ({blas[0].get('threading_layer')})"


def thread_counts():
    """{"blas": threads of NumPy's BLAS, "numba": Numba's thread pool size (used only by code
    compiled with parallel=True: the engine's kernels are serial; None if Numba is not loaded)}."""
    import sys
    numba = sys.modules.get("numba")
    return {"blas": blas_threads(), "numba": numba.config.NUMBA_NUM_THREADS if numba else None}
