"""What an entry point (a tutorial, the runner, a benchmark) sets up for its process, explicitly.

    from engine.process import configure_process
    configure_process()                      # first thing in main(), under mpirun or not
    configure_process(ranks_in_process=4)    # before starting 4 ranks as threads

Importing ``engine`` changes nothing process-wide (no environment variable, no malloc
setting, no thread count); this function is where it happens, at run time, so the order of
imports does not matter (NumPy may be loaded first).
"""
from engine import allocator, threads


def configure_process(keep_freed_memory=True, ranks_in_process=1):
    """Set this process's BLAS/OpenMP threads and glibc's malloc for training; returns a dict
    of what it found and did:

        {"mpi_launch": bool,          started by mpirun (PMI_RANK, OMPI_COMM_WORLD_RANK, PMIX_RANK)
         "threads_set": 1 or None,    the limit applied to the loaded BLAS/OpenMP pools (None: none)
         "threads_why": str,          see engine.threads.threads_per_rank
         "blas_threads": int or None, NumPy's BLAS threads afterwards
         "keep_freed_memory": bool}   glibc keeps freed memory (engine/allocator.py)

    ``ranks_in_process``: how many ranks run as threads of this process (the in-process
    world); above 1, BLAS gets one thread whatever the environment says. Under mpirun each
    rank gets one thread unless the user set OMP_NUM_THREADS (or OPENBLAS_/MKL_NUM_THREADS).
    ``keep_freed_memory=False`` leaves malloc as it is; so does ``MPIGRAD_KEEP_FREED_MEMORY=0``
    or a ``MALLOC_*_THRESHOLD_`` variable of the user's.
    Cost: a few milliseconds (threadpoolctl scans the loaded libraries).
    """
    n, why = threads.threads_per_rank(ranks_in_process)
    if n is not None:
        threads.limit_threads(n)
    kept = bool(keep_freed_memory) and allocator.keep_freed_memory_unless_told_otherwise()
    return {"mpi_launch": threads.launched_by_mpi(), "threads_set": n, "threads_why": why,
            "blas_threads": threads.blas_threads(), "keep_freed_memory": kept}
