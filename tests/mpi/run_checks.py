"""Every check in collective_checks.py, in the real MPI world.

    mpirun -n 4 python -m mpi4py tests/mpi/run_checks.py

Launched by tests/test_collectives_mpi.py at -n 2, 3 and 4 (one launch runs them all).
``python -m mpi4py`` makes an exception on any rank abort every rank, so a failing check
can never leave the others waiting. Rank 0 prints one line per check and "PASS" at the end.
"""
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root

import collectives  # noqa: E402
import collective_checks  # noqa: E402  (this folder is sys.path[0])

comm = collectives.world()
for check in collective_checks.ALL_CHECKS:
    start = time.perf_counter()
    check(comm)
    comm.barrier()
    if comm.rank == 0:
        print(f"{check.__name__:<40} ok  {time.perf_counter() - start:6.2f} s", flush=True)
if comm.rank == 0:
    print(f"PASS on {comm.size} MPI ranks", flush=True)
