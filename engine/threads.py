"""Thread counts per rank under MPI.

``mpirun -n 4`` on a 2-core machine already runs two ranks per core; if each
rank's BLAS (and Numba) also started one thread per core, the threads would
fight for the cores and every rank would slow down. So when the engine is
imported inside an MPI launch it asks for one thread per rank, unless the user
has chosen: set ``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``,
``NUMBA_NUM_THREADS``) yourself to override, e.g. ``mpirun -n 2 -genv OMP_NUM_THREADS 2 ...``.

The variables are read by BLAS and Numba when they load, so this only takes
effect if ``engine`` is imported before NumPy: the tutorials and the runner do so.
"""
import os

# Set by the process managers of MPICH/Hydra and srun --mpi=pmi2 (PMI_RANK), Open MPI
# (OMPI_COMM_WORLD_RANK) and PMIx launchers. Not SLURM_PROCID: a plain batch script has it too.
_MPI_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def launched_by_mpi(environ=os.environ):
    """True when this process is a rank started by an MPI launcher."""
    return any(name in environ for name in _MPI_RANK_VARIABLES)


def one_thread_per_rank(environ=os.environ):
    """Under an MPI launch, default every thread-count variable the user left unset to 1.
    Returns the names it set."""
    if not launched_by_mpi(environ) or any(name in environ for name in _THREAD_VARIABLES):
        return []
    for name in _THREAD_VARIABLES:
        environ[name] = "1"
    return list(_THREAD_VARIABLES)
