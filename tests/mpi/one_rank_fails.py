"""Rank 1 raises while rank 0 waits for its message: the whole run must abort, not hang.

    mpirun -n 3 python -m mpi4py tests/mpi/one_rank_fails.py          # exits non-zero at once
    mpirun -n 1 python -m mpi4py tests/mpi/one_rank_fails.py --hang   # sleeps (tests the timeout)
"""
import pathlib
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root
import collectives  # noqa: E402

if "--hang" in sys.argv:
    time.sleep(600)
comm = collectives.world()
if comm.rank == 1:
    raise RuntimeError("rank 1 fails on purpose")
comm.recv(numpy.empty(4), 1)  # never satisfied: only the abort ends this rank
