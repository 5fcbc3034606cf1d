"""The watchdog (collectives/watchdog.py) under real mpirun: a stopped rank aborts the job.

tests/mpi/hang_checks.py loops on collectives on 4 ranks with ``set_timeout(3)``; here one
rank gets SIGSTOP, and the job must end, non-zero, within timeout + 10 s, with the watchdog's
line on stderr and no rank left behind (the stopped one included). A slow rank that still
makes progress (2 s between steps, under the 3 s timeout) must not set it off.
"""
import os
import pathlib
import re
import signal
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from launch import ROOT, launch, mpirun_path, rank_pid, run_mpi  # noqa: E402

pytestmark = [pytest.mark.mpi,
              pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun (pip install mpich)")]
SCRIPT = ROOT / "tests" / "mpi" / "hang_checks.py"
TIMEOUT = 3
LINE = re.compile(r"mpigrad watchdog: rank (\d) of 4: no progress for [\d.]+ s \(timeout 3 s\) "
                  r"in (\w+)\(.*\) on communicator 'world'.* aborting the job")


def alive(pid):
    """True while ``pid`` is a process that has not yet exited (a zombie has)."""
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_pids(pid_dir, ranks, job, limit=60):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and job.is_alive():
        pids = [pid_dir / f"rank{r}.pid" for r in range(ranks)]
        if all(path.exists() for path in pids):
            return [int(path.read_text()) for path in pids]
        time.sleep(0.1)
    raise AssertionError("the ranks never wrote their pids")


@pytest.mark.timeout(120)
def test_a_stopped_rank_makes_the_watchdog_abort_the_whole_job(tmp_path):
    result = {}
    job = threading.Thread(target=lambda: result.update(
        run=launch(SCRIPT, 4, "--timeout", TIMEOUT, "--pid-dir", tmp_path, timeout=90)))
    job.start()
    pids = []
    try:
        pids = wait_for_pids(tmp_path, 4, job)
        time.sleep(0.5)                     # a few steps in
        os.kill(pids[2], signal.SIGSTOP)
        stopped_at = time.monotonic()
        job.join(TIMEOUT + 10)
        took = time.monotonic() - stopped_at
        assert not job.is_alive(), f"mpirun still running {took:.1f} s after the SIGSTOP"
    finally:
        if pids and alive(pids[2]):
            os.kill(pids[2], signal.SIGCONT)
            os.kill(pids[2], signal.SIGKILL)
        job.join()
    run = result["run"]
    assert run.returncode != 0
    fired = [match.groups() for match in map(LINE.search, run.stderr.splitlines()) if match]
    assert fired, f"no watchdog line on stderr:\n{run.stderr}"
    ranks = [rank for rank, _ in fired]
    assert len(ranks) == len(set(ranks)) and "2" not in ranks, fired   # one line per rank
    assert all(op in {"recv", "send", "sendrecv", "wait", "waitany", "barrier",
                      "library_allreduce"} for _, op in fired), fired
    time.sleep(1)                           # the kernel reaps what hydra killed
    assert not [pid for pid in pids if alive(pid)], "a rank outlived the job"


@pytest.mark.timeout(120)
def test_a_slow_but_progressing_rank_does_not_set_it_off():
    result = run_mpi(SCRIPT, 4, "--timeout", TIMEOUT, "--slow", 2, "--steps", 3, timeout=90)
    assert "PASS" in result.stdout and "watchdog" not in result.stderr


@pytest.mark.timeout(120)
def test_the_runner_timeout_flag_ends_a_job_whose_rank_is_stopped(tmp_path):
    """strategies.train --timeout 3 (the runner's flag; default 300): kill -STOP rank 1 of a
    training job, and the others' watchdogs end it, naming themselves and their wait."""
    marker = str(tmp_path / "record.json")          # in every rank's command line
    result = {}
    job = threading.Thread(target=lambda: result.update(run=launch(
        "strategies.train", 4, "--epochs", "50", "--timeout", TIMEOUT, "--quiet", "--out", marker, timeout=90)))
    job.start()
    pid = None
    try:
        deadline = time.monotonic() + 60
        while pid is None and time.monotonic() < deadline:
            pid = rank_pid(1, marker)
            time.sleep(0.1)
        assert pid is not None, "rank 1 never started"
        time.sleep(3)                                   # loaded, compiled, training
        os.kill(pid, signal.SIGSTOP)
        job.join(TIMEOUT + 15)
        assert not job.is_alive(), "the job outlived its stopped rank by 18 s"
    finally:
        if pid and alive(pid):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        job.join()
    run = result["run"]
    assert run.returncode != 0 and not os.path.exists(marker)
    assert re.search(r"mpigrad watchdog: rank [023] of 4: no progress for [\d.]+ s \(timeout 3 s\)", run.stderr), run.stderr
