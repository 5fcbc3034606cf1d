"""Model parallelism under real mpirun (tests/mpi/pipeline_checks.py): every schedule, tp and
every grid of 2 and 4 ranks == the single process, bytes per stage == formula, the measured
bubble with emulated compute; a stage that raises aborts the job (non-zero, its name, no
hang); bad flags are one message. Every launch has a timeout.
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
CHECKS = ROOT / "tests" / "mpi" / "pipeline_checks.py"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("ranks", [2, 4])
def test_pipeline_checks_under_mpirun(ranks, tmp_path):
    result = run_mpi(CHECKS, ranks, "--out", tmp_path, timeout=130)
    print(result.stdout)
    assert f"PASS on {ranks} MPI ranks" in result.stdout
    assert result.stdout.count("== single") >= 5


@pytest.mark.timeout(60)
def test_a_failing_stage_aborts_the_job_with_its_name(tmp_path):
    start = time.perf_counter()
    done = launch(CHECKS, 4, "--out", tmp_path, "--fail", 2, timeout=45)
    assert done.returncode != 0
    assert "RuntimeError: stage 2 rank 2 fails on purpose" in done.stderr + done.stdout
    assert time.perf_counter() - start < 40


@pytest.mark.timeout(60)
def test_bad_flags_fail_fast_with_one_message():
    done = launch("strategies.train", 4, "--strategy", "pipeline", "--pp", "3", timeout=45)
    assert done.returncode != 0
    message = "dp x pp x tp = 1 x 3 x 1 = 3 ranks, but the job has 4"
    assert done.stderr.count(message) == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.timeout(150)
def test_benchmark_quick_run_writes_json_and_pngs(tmp_path):
    done = launch("benchmarks.pipeline", 4, "--quick", "--out", tmp_path, timeout=140)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "pipeline.json").read_text())
    assert {"single", "dp2", "pp2 naive", "pp2 gpipe", "pp2 1f1b", "pp4 naive", "pp4 gpipe", "pp4 1f1b",
            "dp2 x pp2 1f1b", "tp2", "single, B 1024", "pp2 gpipe, B 1024"} <= set(data["throughput"][0]["samples_per_second"])
    assert "pp2 gpipe, B 1024 / single, B 1024" in data["goals"]
    assert data["memory"]["gpipe"]["stash_peak"] == [4, 4, 4, 4]            # p = 4, M = 4 in --quick
    assert data["memory"]["1f1b"]["stash_peak"] == [4, 3, 2, 1]
    assert set(data["gantt"]) == {"naive", "gpipe", "1f1b", "interleaved"}
    for name in ("pipeline.png", "pipeline_gantt.png"):
        assert (tmp_path / name).stat().st_size > 0
