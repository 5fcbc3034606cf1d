"""Tests of engine.threads: one BLAS/Numba thread per rank under an MPI launch, unless the user chose.

The functions take the environment as an argument, so every test passes a plain dict and
``os.environ`` of the test process is never touched. One test imports the engine in a child
process to check that ``import engine`` itself applies the rule.
"""
import os
import subprocess
import sys

import pytest

from engine import threads

THREAD_VARIABLES = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"]
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
    returned = threads.one_thread_per_rank(env)
    assert sorted(returned) == sorted(THREAD_VARIABLES)
    assert env == {rank_variable: "1", "PATH": "/usr/bin", **{name: "1" for name in THREAD_VARIABLES}}


def test_one_thread_per_rank_does_nothing_outside_mpi():
    env = {"PATH": "/usr/bin"}
    assert threads.one_thread_per_rank(env) == []
    assert env == {"PATH": "/usr/bin"}


@pytest.mark.parametrize("user_variable", THREAD_VARIABLES)
def test_one_thread_per_rank_respects_any_user_choice(user_variable):
    """The user set one variable (say OMP_NUM_THREADS=2 through mpirun -genv): that is a choice of
    thread count, so none of the four is set, not even the three the user left alone."""
    env = {"PMI_RANK": "0", user_variable: "2"}
    assert threads.one_thread_per_rank(env) == []
    assert env == {"PMI_RANK": "0", user_variable: "2"}


def test_default_environment_is_os_environ():
    """Called without an argument, both functions read os.environ (checked without changing it)."""
    assert threads.launched_by_mpi() == any(name in os.environ for name in RANK_VARIABLES)


def run_import_engine(extra_env):
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES + RANK_VARIABLES}
    env.update(extra_env)
    code = "import os, engine; print([os.environ.get(n) for n in %r])" % (THREAD_VARIABLES,)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_engine_applies_the_rule():
    assert run_import_engine({"PMI_RANK": "0"}) == str(["1"] * 4)
    assert run_import_engine({}) == str([None] * 4)
    assert run_import_engine({"OMPI_COMM_WORLD_RANK": "1", "OMP_NUM_THREADS": "2"}) == str(["2", None, None, None])
