"""Smoke test of benchmarks/reliability.py on 4 ranks: it runs, resumes bit for bit, and writes
every number and its plot. No timing is asserted (a shared machine is too noisy)."""
import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from launch import launch, mpirun_path  # noqa: E402  (tests/mpi/launch.py)


@pytest.mark.mpi
@pytest.mark.timeout(60)
@pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun")
def test_benchmark_quick_run_writes_json_and_png(tmp_path):
    done = launch("benchmarks.reliability", 4, "--quick", "--out", tmp_path, timeout=55)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "reliability.json").read_text())
    assert result["quick"] and result["bit_identical"] is True
    assert "load_average_before" in result["machine_info"] and result["load_average_after"]
    assert set(result["checkpoints"]) == set(result["nan_guard"]) == {"mlp", "lenet5"}
    for model, c in result["checkpoints"].items():
        assert c["resume"]["bit_identical"] and c["resume"]["resumed_from_step"] == [8], model
        for every in map(str, result["every"]):
            run = c["runs"][every]
            assert run["written"] >= 1 and run["same_params_as_none"], (model, every)
            # every rank's parameters and momentum buffers, float32: at least 4 * 2 * n * 4 bytes
            assert run["bytes_per_checkpoint"] >= 4 * 2 * c["n_params"] * 4
            assert 0 < run["share_of_training"]["median"] < 1
        assert c["ratio_vs_savez"] > 0 and c["ratio_vs_savez_fsync"] > 0
        assert c["resume"]["startup_ratio"]["median"] > 0
        assert 0 < result["nan_guard"][model]["ratio"] < 1
    assert result["watchdog"]["ratio_on_over_off"]["median"] > 0
    png = (tmp_path / "reliability.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not pathlib.Path(result["scratch"]).exists(), "the checkpoints are removed"
