"""Tests of engine.threads and engine.process: one BLAS thread per rank under an MPI launch or for
ranks run as threads, unless the user chose; and ``import engine`` changing nothing process-wide.

The decision functions take the environment as an argument, so those tests pass a plain dict and
``os.environ`` of the test process is never touched. What changes the process (thread limits,
malloc) runs in child processes.
"""
import json
import os
import subprocess
import sys

import pytest

from engine import threads

THREAD_VARIABLES = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]
# What MPICH/Hydra, Open MPI, PMIx and Slurm's srun put in each rank's environment.
RANK_VARIABLES = ["PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"]


def test_not_launched_by_mpi_on_a_plain_environment():
    assert not threads.launched_by_mpi({})
    assert not threads.launched_by_mpi({"PATH": "/usr/bin", "OMP_NUM_THREADS": "1", "RANK": "0"})


@pytest.mark.parametrize("rank_variable", RANK_VARIABLES)
def test_launched_by_mpi_under_each_launcher(rank_variable):
    assert threads.launched_by_mpi({rank_variable: "3"})
    assert threads.launched_by_mpi({rank_variable: "0"})  # rank 0 too: presence, not value, counts


@pytest.mark.parametrize("rank_variable", RANK_VARIABLES)
def test_one_thread_per_rank_under_mpi(rank_variable):
    env = {rank_variable: "1", "PATH": "/usr/bin"}
    n, why = threads.threads_per_rank(1, env)
    assert n == 1 and "rank" in why
    assert env == {rank_variable: "1", "PATH": "/usr/bin"}   # nothing written


def test_nothing_outside_mpi_with_one_rank():
    assert threads.threads_per_rank(1, {"PATH": "/usr/bin"})[0] is None


@pytest.mark.parametrize("user_variable", THREAD_VARIABLES)
def test_under_mpi_the_users_choice_wins(user_variable):
    """The user set one variable (say OMP_NUM_THREADS=2 through mpirun -genv): BLAS read it when
    it loaded, and nothing is changed."""
    n, why = threads.threads_per_rank(1, {"PMI_RANK": "0", user_variable: "2"})
    assert n is None and user_variable in why


@pytest.mark.parametrize("env", [{}, {"OMP_NUM_THREADS": "4"}, {"PMI_RANK": "0", "OMP_NUM_THREADS": "4"}])
def test_ranks_run_as_threads_always_get_one_blas_thread(env):
    assert threads.threads_per_rank(4, env)[0] == 1


def test_default_environment_is_os_environ():
    """Called without an argument, the functions read os.environ (checked without changing it)."""
    assert threads.launched_by_mpi() == any(name in os.environ for name in RANK_VARIABLES)


def run_child(code, extra_env):
    """Run ``code`` in a fresh interpreter with the rank and thread variables of ``extra_env``
    only; it prints one JSON value, returned here."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES + RANK_VARIABLES
           and not k.startswith("MALLOC_") and k != "MPIGRAD_KEEP_FREED_MEMORY"}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


IMPORT_CHANGES_NOTHING = """
import json, os
before = dict(os.environ)
import numpy, engine, engine.nn, engine.kernels, collectives
from engine import threads
env_same = dict(os.environ) == before   # compared before threadpoolctl loads: it sets a variable
print(json.dumps({"env_same": env_same, "blas": threads.blas_threads(),
                  "cores": max(1, len(os.sched_getaffinity(0)))}))
"""


def test_import_engine_changes_nothing_process_wide():
    """Not the environment, not the BLAS thread count, even inside an MPI launch."""
    seen = run_child(IMPORT_CHANGES_NOTHING, {"PMI_RANK": "0"})
    assert seen["env_same"]
    if seen["cores"] > 1 and seen["blas"] is not None:
        assert seen["blas"] > 1        # OpenBLAS's default: a thread per core, left alone


CONFIGURE = """
import json, sys
import numpy                          # NumPy first: no "import engine before NumPy" rule
from engine.process import configure_process
done = configure_process(ranks_in_process=int(sys.argv[1]) if len(sys.argv) > 1 else 1)
print(json.dumps(done))
"""


def test_configure_process_under_mpi_gives_one_blas_thread_after_numpy_loaded():
    done = run_child(CONFIGURE, {"PMI_RANK": "0"})
    assert done["mpi_launch"] and done["threads_set"] == 1
    assert done["blas_threads"] in (1, None)


def test_configure_process_respects_the_users_variable_under_mpi():
    done = run_child(CONFIGURE, {"OMPI_COMM_WORLD_RANK": "1", "OMP_NUM_THREADS": "2"})
    assert done["threads_set"] is None and "OMP_NUM_THREADS" in done["threads_why"]


def test_configure_process_for_ranks_as_threads():
    code = CONFIGURE.replace("int(sys.argv[1]) if len(sys.argv) > 1 else 1", "3")
    done = run_child(code, {})
    assert not done["mpi_launch"] and done["threads_set"] == 1 and done["blas_threads"] in (1, None)


def test_configure_process_outside_mpi_changes_no_threads_and_reports_malloc():
    import platform
    done = run_child(CONFIGURE, {})
    assert done["threads_set"] is None
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert done["keep_freed_memory"] is glibc
    assert run_child(CONFIGURE, {"MPIGRAD_KEEP_FREED_MEMORY": "0"})["keep_freed_memory"] is False


def test_set_blas_threads_returns_the_previous_count():
    code = ("import json; from engine.threads import set_blas_threads, blas_threads\n"
            "first = set_blas_threads(1); second = set_blas_threads(2)\n"
            "print(json.dumps([first, second, blas_threads()]))")
    first, second, now = run_child(code, {})
    if first is not None:               # a BLAS that threadpoolctl can drive
        assert second == 1 and now in (1, 2)   # 2, or 1 where the machine has a single core
