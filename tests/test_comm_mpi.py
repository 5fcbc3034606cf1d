"""The point-to-point checks (tests/mpi/comm_checks.py) under real mpirun, at 2, 3 and 4 ranks.

One launch per world size runs every check; it has a timeout, and ``python -m mpi4py``
makes an exception on one rank abort all of them (tests/mpi/launch.py).
"""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from launch import ROOT, mpirun_path, run_mpi  # noqa: E402

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun (pip install mpich)")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_every_comm_check_under_mpirun(ranks):
    result = run_mpi(ROOT / "tests" / "mpi" / "comm_checks.py", ranks, timeout=100)
    assert f"PASS on {ranks} MPI ranks" in result.stdout
