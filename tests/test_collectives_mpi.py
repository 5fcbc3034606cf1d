"""Collectives under real mpirun: the same checks as in-process, at 2, 3 and 4 ranks.

Each world size is one mpirun launch that runs every check (tests/mpi/run_checks.py), so the
start-up cost is paid once. Every launch has a timeout; scripts run as ``python -m mpi4py``
so that an exception on one rank aborts all of them instead of leaving the rest waiting.
"""
import json
import pathlib
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from launch import ROOT, mpirun_path, run_mpi  # noqa: E402

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun (pip install mpich)")]
MPI_DIR = ROOT / "tests" / "mpi"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_every_check_under_mpirun(ranks):
    result = run_mpi(MPI_DIR / "run_checks.py", ranks, timeout=100)
    assert f"PASS on {ranks} MPI ranks" in result.stdout


@pytest.mark.timeout(60)
def test_an_exception_on_one_rank_aborts_every_rank():
    with pytest.raises(AssertionError, match="exited with"):
        run_mpi(MPI_DIR / "one_rank_fails.py", 3, timeout=45)


@pytest.mark.timeout(120)
def test_tutorial_03_passes_on_4_ranks():
    result = run_mpi(ROOT / "tutorials" / "03_ring_allreduce.py", 4, "--quick", timeout=100)
    assert result.stdout.rstrip().endswith("PASS")


@pytest.mark.timeout(180)
def test_benchmark_quick_run_writes_json_and_png(tmp_path):
    run_mpi("benchmarks.collectives", 2, "--quick", "--out", tmp_path, timeout=150)
    data = json.loads((tmp_path / "collectives.json").read_text())
    assert data["ranks"] == 2 and {"ring", "mpi", "tree", "auto"} <= set(data["seconds"])
    assert len(data["auto_choice"]) == len(data["sizes"]) and "mpi" not in data["auto_choice"]
    assert (tmp_path / "collectives.png").stat().st_size > 0


def test_launch_helper_reports_a_timeout():
    with pytest.raises(subprocess.TimeoutExpired):
        run_mpi(MPI_DIR / "one_rank_fails.py", 1, "--hang", timeout=3)
