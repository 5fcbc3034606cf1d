"""Launch a script under mpirun from a test, with a timeout, one thread per rank.

    result = run_mpi("tests/mpi/run_checks.py", ranks=3)
    assert "PASS" in result.stdout

Scripts run as ``python -m mpi4py script.py`` so that one failing rank aborts them all.
"""
import os
import pathlib
import shutil
import signal
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def mpirun_path():
    """mpirun next to this Python (the mpich wheel in the venv), else the one on PATH."""
    here = pathlib.Path(sys.executable).parent
    for name in ("mpirun", "mpiexec"):
        if (here / name).exists():
            return str(here / name)
    return shutil.which("mpirun") or shutil.which("mpiexec")


def start(script, ranks, *args):
    """Start ``script`` from the repository root, one BLAS thread per rank, and return the
    Popen (stdout and stderr piped, text) without waiting: for a test that acts on the job
    while it runs (kills a rank). It runs in a session of its own, so that ``os.killpg`` of
    its pid ends the whole group (mpirun and every rank).

    ``script`` is a path, or a dotted module name such as "benchmarks.collectives" (run
    with ``-m``, as modules whose file names match a package must be). ``ranks``: the
    ``mpirun -n`` count, or None for a plain ``python`` process.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    target = ["-m", script] if isinstance(script, str) and not script.endswith(".py") else [str(script)]
    if ranks is None:
        command = [sys.executable, *target, *map(str, args)]
    else:
        command = [mpirun_path(), "-n", str(ranks), sys.executable, "-m", "mpi4py", *target,
                   *map(str, args)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def launch(script, ranks, *args, timeout=120):
    """``start`` and wait: the CompletedProcess whatever its exit code
    (subprocess.TimeoutExpired past ``timeout``, after killing the whole group)."""
    process = start(script, ranks, *args)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def run_mpi(script, ranks, *args, timeout=120):
    """``launch`` under ``mpirun -n ranks``, asserting success: AssertionError with the output
    when the run fails."""
    result = launch(script, ranks, *args, timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(result.args)} exited with {result.returncode}\n"
                                    f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}")
    return result


def rank_pid(rank, marker):
    """The pid of MPI rank ``rank`` of the job whose command line holds ``marker``: tutorial
    12's ``rank_pid`` (it teaches how to find a rank's process from outside), not a copy."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("tutorial_12", ROOT / "tutorials" / "12_faults_and_checkpoints.py")
    tutorial = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tutorial)
    return tutorial.rank_pid(rank, marker)
