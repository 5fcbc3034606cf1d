"""What an entry point (a tutorial, the runner, a benchmark) sets up for its process, explicitly.

    from engine.process import configure_process
    configure_process()          # first thing in main(): one BLAS thread per MPI rank, malloc kept

Importing ``engine`` changes nothing process-wide; this function is where it happens.
"""
from engine import allocator, threads


def configure_process(keep_freed_memory=True):
    """One BLAS thread per rank under mpirun (unless the user chose), and glibc's malloc told
    to keep freed memory (see engine/allocator.py). Returns what it did, as a dict."""
    return {"threads": threads.one_thread_per_rank(),
            "keep_freed_memory": keep_freed_memory and allocator.keep_freed_memory_unless_told_otherwise()}
