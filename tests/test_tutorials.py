"""The tutorials run as their headers say and end with PASS (exit code 0).

Each is started as a user would start it, in a subprocess from the repository root;
tutorial 02 under ``mpirun -n 2`` with one short epoch per model. Tutorials 03-05, 07-09 and 11 run
both ways their headers give, with --quick: under ``mpirun -n 4`` (4 processes) and with plain
``python`` (4 ranks as threads of one process, tutorials/ranks.py), and every check compares
4 real ranks both times. Tutorial 12 is a driver run with plain ``python`` that launches
``mpirun -n 4`` itself (it kills ranks, which ends an mpirun job).
"""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
MPIRUN = shutil.which("mpirun", path=str(pathlib.Path(sys.executable).parent)) or shutil.which("mpirun")


def run(command, timeout=120):
    """Run ``command`` (a list) from the repository root; return (exit code, stdout + stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def assert_passed(code, output):
    assert code == 0, output
    lines = output.strip().splitlines()
    assert lines and lines[-1] == "PASS", output


def test_01_autograd():
    code, output = run([sys.executable, "tutorials/01_autograd.py"])
    assert_passed(code, output)
    assert "dc/da = 4" in output


def test_10_pruning_and_quantization_quick():
    code, output = run([sys.executable, "tutorials/10_pruning_and_quantization.py", "--quick"])
    assert_passed(code, output)
    assert "same mask as magnitude_masks: True" in output
    assert "ok    int8_matmul == the int64 NumPy product, exactly" in output


needs_mpirun = pytest.mark.skipif(MPIRUN is None, reason="needs mpirun (pip install -e '.[mpi]')")


@pytest.mark.mpi
@needs_mpirun
def test_01_autograd_under_mpirun_prints_once():
    code, output = run([MPIRUN, "-n", "2", sys.executable, "-m", "mpi4py", "tutorials/01_autograd.py"])
    assert_passed(code, output)
    assert output.count("PASS") == 1, "only rank 0 prints"


@pytest.mark.mpi
@needs_mpirun
@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_02_mnist_single_under_mpirun(model):
    code, output = run([MPIRUN, "-n", "2", sys.executable, "-m", "mpi4py", "tutorials/02_mnist_single.py",
                        "--epochs", "1", "--model", model])
    assert_passed(code, output)
    assert "all 2 ranks hold bit-identical parameters" in output
    assert output.count("PASS") == 1, "only rank 0 prints"


def test_02_mnist_single_writes_a_plot(tmp_path):
    png = tmp_path / "loss.png"
    code, output = run([sys.executable, "tutorials/02_mnist_single.py", "--epochs", "2",
                        "--model", "linear", "--plot", str(png)])
    assert_passed(code, output)
    assert png.stat().st_size > 0


# (tutorial, a line its checks print only when 4 ranks really took part)
DISTRIBUTED = [
    ("03_ring_allreduce", "every rank holds every chunk summed over all 4 ranks: True"),
    ("04_data_parallel", "ok    all 4 replicas bit-identical (SHA-256)"),
    ("05_local_sgd_and_gossip", "ok    gossip (ring): bytes per rank per step == formula"),
    ("07_parameter_server", "ok    ps-sync: bytes per worker per step == formula"),
    ("08_pipeline", "ok    pipeline 1f1b: bytes per stage per step == formula"),
    ("09_tensor_parallel", "ok    --strategy tp, tp = 4 == single process after 3 steps (1e-10, float64)"),
    ("11_gradient_compression", "ok    every compressor on 4 ranks: bytes counted by comm.counters == bytes_sent(p, n, 4)"),
]
IN_PROCESS = "not launched by mpirun: running 4 ranks as threads in this process"


@pytest.mark.parametrize("name, four_ranks", DISTRIBUTED, ids=[name for name, _ in DISTRIBUTED])
def test_distributed_tutorial_runs_4_ranks_as_threads_without_mpirun(name, four_ranks):
    code, output = run([sys.executable, f"tutorials/{name}.py", "--quick"])
    assert_passed(code, output)
    assert output.startswith(IN_PROCESS), output
    assert four_ranks in output


@pytest.mark.mpi
@needs_mpirun
@pytest.mark.parametrize("name, four_ranks", DISTRIBUTED, ids=[name for name, _ in DISTRIBUTED])
def test_distributed_tutorial_under_mpirun(name, four_ranks):
    code, output = run([MPIRUN, "-n", "4", sys.executable, "-m", "mpi4py", f"tutorials/{name}.py", "--quick"])
    assert_passed(code, output)
    assert IN_PROCESS not in output
    assert four_ranks in output
    assert output.count("PASS") == 1, "only rank 0 prints"


@pytest.mark.mpi
@needs_mpirun
def test_12_faults_and_checkpoints_quick():
    """The driver launches mpirun itself (plain python): kill -9, --resume, torn checkpoints,
    the NaN guard and the watchdog, each checked; about 20-30 s on 2 cores."""
    code, output = run([sys.executable, "tutorials/12_faults_and_checkpoints.py", "--quick"], timeout=180)
    assert_passed(code, output)
    assert "ok    --resume after kill -9 == the uninterrupted run (params_sha256, bit for bit)" in output
    assert "checkpoint skipped: $D/ck/step-00000140: rank-00001.npz: SHA-256 differs" in output
    assert "--on-nan stop: rank " in output and "mpigrad watchdog: rank " in output
