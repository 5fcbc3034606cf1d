"""Thread counts per rank under MPI.

``mpirun -n 4`` on a 2-core machine already runs two ranks per core; if each
rank's BLAS (and Numba) also started one thread per core, the threads would
fight for the cores and every rank would slow down. So when the engine is
imported inside an MPI launch it asks for one thread per rank, unless the user
has chosen: set ``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``,
``NUMBA_NUM_THREADS``) yourself to override, e.g. ``mpirun -n 2 -genv OMP_NUM_THREADS 2 ...``.

The variables are read by BLAS and Numba when they load, so this only takes
effect if ``engine`` is imported before NumPy: the tutorials and the runner do so.

Outside mpirun nothing is set: BLAS uses every core, which the big matrix products of an
MLP step use well. The engine's own Numba kernels (engine/kernels/cpu.py) run on one
thread whatever these variables say: on the 2-core machine we measured (with other jobs
keeping the load near 2), a ``parallel=True`` build made the LeNet-5 step slower (median
16 ms against 4.7 ms), because Numba's OpenMP threads and OpenBLAS's threads, each pool as
large as the machine, took the cores from each other.
``thread_counts()`` reports what this process actually got.
"""
import ctypes
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


def blas_threads():
    """(threads NumPy's BLAS uses, how we found out): threadpoolctl if it is installed, else
    the OpenBLAS library NumPy loaded, asked directly (what threadpoolctl does too)."""
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        if blas:
            return blas[0]["num_threads"], f"threadpoolctl ({blas[0]['internal_api']})"
    except ImportError:
        pass
    found = _openblas("get")
    if found is None:
        return None, "unknown (no threadpoolctl, no OpenBLAS found)"
    get, name = found
    return int(get()), name


def set_blas_threads(n):
    """Give NumPy's OpenBLAS ``n`` threads now, after NumPy has loaded; returns the previous
    count (None: no OpenBLAS found; other BLAS libraries are left alone).

    The environment variables above only work before NumPy loads. Ranks run as threads (the
    in-process world) share one BLAS: with its default of one thread per core, K thread-ranks
    start K x cores BLAS threads that spin waiting for each other (on 2 cores, steps ran 100x
    slower), so the in-process runner and notebooks call ``set_blas_threads(1)``.
    """
    get, set_ = _openblas("get"), _openblas("set")
    if get is None or set_ is None:
        return None
    previous = int(get[0]())
    set_[0](int(n))
    return previous


def _openblas(which):
    """(the C function openblas_{which}_num_threads of the OpenBLAS NumPy loaded, a description),
    or None. Its symbol carries a prefix and suffix in the scipy-openblas wheels NumPy ships."""
    import numpy  # noqa: F401  (loads the BLAS, if nothing did yet)
    try:
        with open("/proc/self/maps") as maps:
            libs = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        libs = []
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
            symbol = f"{prefix}openblas_{which}_num_threads{suffix}"
            if hasattr(lib, symbol):
                return getattr(lib, symbol), f"{symbol}() in {os.path.basename(path)}"
    return None


def thread_counts():
    """{"blas": threads of NumPy's BLAS, "numba": Numba's thread pool size (used only by
    user code compiled with parallel=True; the engine's kernels are serial)}."""
    import numba
    return {"blas": blas_threads()[0], "numba": numba.config.NUMBA_NUM_THREADS}
