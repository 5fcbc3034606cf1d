"""Strategies under real mpirun: the checks at 2 and 4 ranks, the runner's command line (same
command twice -> bit-identical parameters; bad flags -> one message, no hang), the tutorials
and the benchmark's --quick mode. Every launch has a timeout.

The runner and the benchmark are modules (``python -m mpi4py -m strategies.train``):
tests/mpi/launch.py's ``launch`` runs them by name, and returns failed runs for inspection.
"""
import json
import os
import sys
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "mpi"))
from launch import ROOT, launch, mpirun_path, run_mpi  # noqa: E402

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun (pip install mpich)")]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 4])
def test_strategy_checks_under_mpirun(ranks, tmp_path):
    """dp == single for every all-reduce (1e-10 float64, 1e-6 float32), replicas identical,
    reproducible, local-sgd H=1 == dp, bytes == formula, gossip consensus (strategy_checks.py)."""
    result = run_mpi(ROOT / "tests" / "mpi" / "strategy_checks.py", ranks, "--out", tmp_path, timeout=100)
    assert f"PASS on {ranks} MPI ranks" in result.stdout
    assert result.stdout.count("dp --algorithm") == 7


@pytest.mark.timeout(90)
def test_the_same_command_twice_gives_bit_identical_parameters_and_a_record(tmp_path):
    flags = ["--strategy", "dp", "--epochs", "2", "--max-steps", "150", "--batch-size", "32"]
    for name in ("a", "b"):
        done = launch("strategies.train", 2, *flags, "--out", tmp_path / f"{name}.json",
                          "--save-params", tmp_path / f"{name}.npz")
        assert done.returncode == 0, done.stderr
    assert done.stdout.count("epoch   2 |") == 1, "only rank 0 prints"
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    record = json.loads((tmp_path / "a.json").read_text())
    assert record["world_size"] == 2 and record["strategy"] == "dp" and len(record["epochs"]) == 2
    assert record["steps"] == 150 and record["samples"] == 150 * 32
    assert record["bytes_sent_per_rank_per_step"] == record["formula_bytes_per_rank_per_step"]
    assert record["final_test_accuracy"] > 0.7 and record["samples_per_second"] > 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("ranks, flags, message", [
    (2, ["--batch-size", "63"], "must divide evenly over the 2 data-parallel ranks"),
    (2, ["--strategy", "zero"], "invalid choice: 'zero'"),
    (3, ["--strategy", "local-sgd", "--period", "0"], "--period must be >= 1"),
    (None, ["--strategy", "gossip"], "needs at least 2 ranks"),
])
def test_invalid_combinations_fail_fast_with_one_message(ranks, flags, message):
    start = time.perf_counter()
    done = launch("strategies.train", ranks, *flags, timeout=45)
    assert done.returncode != 0
    assert done.stderr.count(message) == 1, done.stderr
    assert "Abort" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert time.perf_counter() - start < 30


@pytest.mark.timeout(120)
@pytest.mark.parametrize("tutorial", ["04_data_parallel.py", "05_local_sgd_and_gossip.py"])
def test_tutorial_passes_on_4_ranks(tutorial):
    result = run_mpi(ROOT / "tutorials" / tutorial, 4, "--quick", timeout=100)
    assert result.stdout.rstrip().endswith("PASS")
    assert result.stdout.count("PASS") == 1, "only rank 0 prints"


@pytest.mark.timeout(150)
def test_benchmark_quick_run_writes_json_and_png(tmp_path):
    done = launch("benchmarks.strategies", 4, "--quick", "--out", tmp_path, timeout=140)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads((tmp_path / "strategies.json").read_text())
    assert {"single", "dp", "local-sgd", "gossip"} <= {run["strategy"] for run in data["runs"].values()}
    assert {1, 2, 4} <= {point["ranks"] for point in data["scaling"]["measured"]}
    for name in ("strategies.png", "strategies_scaling.png"):
        assert (tmp_path / name).stat().st_size > 0
