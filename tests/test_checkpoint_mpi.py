"""kill -9 one rank of a real mpirun -n 4 job mid-epoch, then --resume: the final parameters
are bit-identical to the run that was never interrupted (MATH A8), for every deterministic
strategy. The uninterrupted reference runs as threads (``--threads 4``): the threads world
computes the same sums in the same order as MPI, the collectives being the same code.

Each job: 16 steps per epoch (batch 240 of the 4,000 bundled images), 20 steps, a checkpoint
every 4 steps. Rank 2 SIGKILLs itself after step 11 (tests/mpi/killed_run.py), so the newest
checkpoint is step 8, mid-epoch 1, and the resumed run crosses the epoch boundary.
"""
import json
import os
import signal
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "mpi"))
from launch import launch, rank_pid, run_mpi, start  # noqa: E402

COMMON = ["--batch-size", "240", "--epochs", "2", "--max-steps", "20", "--lr", "0.05",
          "--momentum", "0.9", "--quiet"]
STRATEGIES = {
    "dp": ["--strategy", "dp"],
    "local-sgd": ["--strategy", "local-sgd", "--period", "3"],
    "gossip": ["--strategy", "gossip"],
    "ps-sync": ["--strategy", "ps-sync"],
    "pipeline": ["--strategy", "pipeline", "--dp", "2", "--micro-batches", "4"],
    "compressed dp": ["--strategy", "dp", "--compress", "topk", "--ratio", "0.05"],
}
EXIT_WITHIN = 30     # seconds: the job must be gone long before this (MPICH kills the others)


def reference_hash(flags, tmp_path):
    """The uninterrupted run's hash, 4 ranks as threads in one process (``--threads 4``: one
    BLAS thread per rank, as under mpirun, so every matrix product sums in the same order)."""
    out = tmp_path / "reference.json"
    run_mpi("strategies.train", None, *flags, "--threads", "4", "--out", out, timeout=120)
    return json.loads(out.read_text())["params_sha256"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_kill_9_mid_epoch_then_resume_is_bit_identical(name, tmp_path):
    flags = [*COMMON, *STRATEGIES[name]]
    saving = ["--checkpoint-dir", str(tmp_path / "ck"), "--checkpoint-every", "4"]
    tic = time.monotonic()
    killed = launch("tests/mpi/killed_run.py", 4, "--kill-rank", "2", "--kill-step", "11", "--",
                    *flags, *saving, timeout=EXIT_WITHIN + 60)
    seconds = time.monotonic() - tic
    assert killed.returncode != 0, killed.stdout + killed.stderr
    assert seconds < EXIT_WITHIN, f"the killed job took {seconds:.1f} s to exit"
    assert (tmp_path / "ck" / "step-00000008" / "manifest.json").exists()
    assert not (tmp_path / "ck" / "step-00000012" / "manifest.json").exists()   # files maybe, never whole
    out = tmp_path / "record.json"
    run_mpi("tests/mpi/killed_run.py", 4, "--", *flags, *saving, "--resume", "--out", out, timeout=120)
    record = json.loads(out.read_text())
    assert record["checkpoints"]["resumed_from_step"] == 8 and record["steps"] == 20
    assert record["params_sha256"] == reference_hash(flags, tmp_path)


@pytest.mark.timeout(240)
def test_an_external_kill_9_then_resume(tmp_path):
    """The operator's kill -9 from outside, at whatever step the job has reached past the first
    checkpoint: every rank exits, and --resume still ends bit-identical to the reference."""
    flags = ["--batch-size", "64", "--epochs", "3", "--max-steps", "150", "--lr", "0.05", "--quiet",
             "--strategy", "dp"]
    directory = tmp_path / "ck"
    saving = ["--checkpoint-dir", str(directory), "--checkpoint-every", "10", "--keep-checkpoints", "3"]
    job = start("strategies.train", 4, *flags, *saving)
    try:
        deadline = time.monotonic() + 120
        while not (directory / "step-00000010" / "manifest.json").exists():
            assert job.poll() is None, job.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        pid = rank_pid(1, str(directory))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        tic = time.monotonic()
        job.communicate(timeout=EXIT_WITHIN)
        assert job.returncode != 0 and time.monotonic() - tic < EXIT_WITHIN
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
    assert rank_pid(0, str(directory)) is None            # no rank outlives the job
    out = tmp_path / "record.json"
    run_mpi("strategies.train", 4, *flags, *saving, "--resume", "--out", out, timeout=120)
    record = json.loads(out.read_text())
    assert record["checkpoints"]["resumed_from_step"] >= 10 and record["steps"] == 150
    assert record["params_sha256"] == reference_hash(flags, tmp_path)
