"""Parameter servers under real mpirun (tests/mpi/ps_checks.py): ps-sync == single, ps-ssp s=0
== ps-sync, the asynchronous invariants, backup workers and bytes per role at 3 and 4 ranks;
a server or a worker that raises aborts the job (non-zero, message naming it, no hang); bad
flags are one message. Every launch has a timeout.
"""
import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "mpi"))
from launch import ROOT, launch, mpirun_path, run_mpi  # noqa: E402

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun (pip install mpich)")]
CHECKS = ROOT / "tests" / "mpi" / "ps_checks.py"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [3, 4])
def test_parameter_server_checks_under_mpirun(ranks, tmp_path):
    result = run_mpi(CHECKS, ranks, "--out", tmp_path, timeout=100)
    print(result.stdout)
    assert f"PASS on {ranks} MPI ranks" in result.stdout
    assert result.stdout.count("== single, float64") == 6         # 3 optimisers x --servers 1, 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("rank, role", [(0, "server"), (2, "worker")])
def test_a_failing_rank_aborts_the_job_with_its_name(rank, role, tmp_path):
    start = time.perf_counter()
    done = launch(CHECKS, 4, "--out", tmp_path, "--fail", rank, timeout=45)
    assert done.returncode != 0
    assert f"RuntimeError: {role} rank {rank} fails on purpose" in done.stderr + done.stdout
    assert time.perf_counter() - start < 40


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "64"], "must divide evenly over the 3 data-parallel ranks"),
    (["--backup-workers", "3"], "--backup-workers 3 must be in 0 .. W-1 = 2"),
    (["--servers", "4"], "--servers 4 needs 1 <= servers < world size 4"),
])
def test_bad_flags_fail_fast_with_one_message(flags, message):
    done = launch("strategies.train", 4, "--strategy", "ps-sync", *flags, timeout=45)
    assert done.returncode != 0
    assert done.stderr.count(message) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.timeout(150)
def test_benchmark_quick_run_writes_json_and_png(tmp_path):
    done = launch("benchmarks.parameter_server", 4, "--quick", "--out", tmp_path, timeout=140)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "parameter_server.json").read_text())
    assert {"ps-sync", "ps-async, straggler", "ps-sync --backup-workers 1, straggler"} <= set(data["runs"])
    assert set(data["cost_model"]) == {"1 server", "2 servers", "4 servers", "ring (no server)"}
    run = data["runs"]["ps-async"]
    assert run["steps"] == 10 and run["updates_applied"] == run["steps"] * 3    # every push applied once
    assert sum(data["runs"]["ps-async, straggler"]["chunks_per_worker"].values()) == 10 * 3
    assert data["repeats"] == 1 and all(len(g["per_round"]) == 1 for g in data["goals"].values())
    assert (tmp_path / "parameter_server.png").stat().st_size > 0
