"""Where tutorials 03-05 get their ranks (from mpirun, or as threads of this one process), and
how the ranks agree on the verdict.

    mpirun -n 4 python -m mpi4py tutorials/04_data_parallel.py   # 4 processes talking through MPI
    python tutorials/04_data_parallel.py                          # 4 threads, collectives.spawn

Each tutorial is written as ``main(comm, args) -> bool`` for one rank. Under mpirun, every
process runs it once on ``collectives.world()``. Started with plain ``python``, the same code
runs on ``world_size`` threads, each with a ThreadComm (collectives/inprocess.py): the
collectives cannot tell the difference, so every check compares real ranks either way. What
the in-process world cannot do is said where it matters: it has no MPI library to compare
with (tutorial 03), and its ranks share one interpreter, so times are not those of processes.
"""
import sys

import numpy

import collectives
from engine.process import configure_process
from engine.threads import launched_by_mpi


def run(main, args, world_size=4):
    """Set the process up (engine/process.py), run ``main(comm, args)`` on every rank; return
    0 (the exit code) if it returned True.

    ``main`` must return the same verdict on every rank (the tutorials reach it with an
    all-reduce), so rank 0's stands for all."""
    if launched_by_mpi():
        configure_process()                          # one BLAS thread per rank
        return 0 if main(collectives.world(), args) else 1
    configure_process(ranks_in_process=world_size)   # the thread-ranks share one BLAS: one thread
    print(f"not launched by mpirun: running {world_size} ranks as threads in this process "
          f"(collectives.spawn); for {world_size} processes: mpirun -n {world_size} python -m mpi4py "
          f"{sys.argv[0]}", flush=True)
    verdicts = collectives.spawn(lambda comm: main(comm, args), world_size, timeout=120.0)
    return 0 if all(verdicts) else 1


def verdict(comm, checks):
    """Rank 0 prints every check of ``checks`` ({what: bool}), then PASS or FAIL; PASS only if
    every check passed on every rank (a min all-reduce, so every rank returns the same)."""
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    say("checks")
    for what, ok in checks.items():
        say(f"  {'ok  ' if ok else 'FAIL'}  {what}")
    passed = collectives.allreduce(comm, numpy.array([all(checks.values())], numpy.int64), "tree", "min")[0] == 1
    say("PASS" if passed else "FAIL")
    return passed
