"""The watchdog under mpirun: ranks that loop on collectives, for a test to stop one of them.

    mpirun -n 4 python -m mpi4py tests/mpi/hang_checks.py --timeout 3 --pid-dir DIR
        every rank writes DIR/rank<r>.pid, then loops on all-reduces (ring, the library's,
        a barrier) for at most --seconds; a test sends SIGSTOP to one rank and expects the
        watchdog to abort the job (tests/test_watchdog_mpi.py)
    mpirun -n 4 python -m mpi4py tests/mpi/hang_checks.py --timeout 3 --slow 2 --steps 3
        the last rank sleeps --slow seconds before each step: slow, but progressing, so the
        run must complete (rank 0 prints PASS)
    mpirun -n 2 python -m mpi4py tests/mpi/hang_checks.py --timeout T --pingpong 10000
        times 10,000 one-element sendrecvs between ranks 0 and 1 (T = 0: watchdog off)
    mpirun -n 3 python -m mpi4py tests/mpi/hang_checks.py --timeout 0 --edge
        not a hang: the edge cases of tests/test_collectives_edge_cases.py that need real MPI
        (a big-endian array on rank 0, the library's all-reduce too; roots out of range)
"""
import argparse
import os
import pathlib
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root
import collectives  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--timeout", type=float, required=True)
parser.add_argument("--pid-dir", type=pathlib.Path)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--slow", type=float)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--pingpong", type=int)
parser.add_argument("--edge", action="store_true")
args = parser.parse_args()

collectives.set_timeout(args.timeout)
comm = collectives.world()
x = numpy.arange(10, dtype=numpy.float64)


def step():
    y = collectives.allreduce(comm, x, "ring")
    assert numpy.array_equal(y, comm.size * x), "ring"
    z = collectives.allreduce(comm, x, "mpi", "max")
    assert numpy.array_equal(z, x), "mpi"
    comm.barrier()


def edge_cases():
    mixed = numpy.arange(4, dtype=">f8" if comm.rank == 0 else "<f8")
    for algorithm in ["naive", "tree", "recursive-doubling", "ring", "mpi"]:
        y = collectives.allreduce(comm, mixed, algorithm)
        assert numpy.array_equal(y, comm.size * numpy.arange(4.0)), (algorithm, y)
    for fn in [collectives.broadcast, collectives.reduce, collectives.gather, collectives.scatter]:
        for root in [-1, comm.size]:
            try:
                fn(comm, numpy.zeros((comm.size, 2)), root)
            except ValueError as exc:
                assert f"root={root} is not a rank" in str(exc), exc
            else:
                raise AssertionError(f"{fn.__name__} accepted root={root}")
    comm.barrier()


if args.edge:
    edge_cases()
    if comm.rank == 0:
        print("PASS", flush=True)
elif args.pingpong:
    mine, theirs = numpy.zeros(1), numpy.empty(1)
    peer = 1 - comm.rank
    comm.barrier()
    start = time.perf_counter()
    if comm.rank < 2:
        for _ in range(args.pingpong):
            comm.sendrecv(mine, peer, theirs, peer)
    elapsed = time.perf_counter() - start
    if comm.rank == 0:
        print(f"{args.pingpong} sendrecvs, timeout {args.timeout:g}: {elapsed:.3f} s "
              f"({elapsed / args.pingpong * 1e6:.2f} us each)", flush=True)
elif args.slow is not None:
    for _ in range(args.steps):
        if comm.rank == comm.size - 1:
            time.sleep(args.slow)
        step()
    if comm.rank == 0:
        print("PASS", flush=True)
else:
    written = args.pid_dir / f"rank{comm.rank}.tmp"
    written.write_text(str(os.getpid()))
    written.rename(args.pid_dir / f"rank{comm.rank}.pid")   # whole, or not there yet
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        step()
    sys.exit(f"rank {comm.rank}: still looping after {args.seconds} s: the watchdog never fired")
