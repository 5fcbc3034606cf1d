"""Smoke test of benchmarks/engine.py: it runs, checks its gradients, and writes its results.

No timing is asserted (a shared CI machine is too noisy); only that every number is there.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_engine_benchmark_quick_run_writes_json_and_png(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.engine", "--quick", "--out", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gradients agree" in run.stdout

    report = json.loads((tmp_path / "engine.json").read_text())
    machine = report["machine"]
    for field in ("cpu", "cores", "numpy", "numba", "torch", "blas_threads", "date", "batch_size",
                  "grad_check", "load_average_before", "load_average_after", "command"):
        assert field in machine, field
    assert machine["batch_size"] == 128 and machine["grad_check"]["passed"]
    assert machine["command"].startswith("python -m benchmarks.engine --quick")

    has_torch = bool(machine["torch"])
    results = report["results"]                                 # the MLP step, at the top level
    assert set(results) == {"engine", "numpy"} | ({"torch"} if has_torch else set())
    sections = [results, report["lenet5"]["results"]]
    if "results" in report["epoch"]:                            # needs Fashion-MNIST installed
        sections.append(report["epoch"]["results"])
        losses = report["epoch"]["first_epoch_mean_loss"]
        if has_torch:                                           # same batches, same start
            assert abs(losses["engine"] - losses["torch"]) < 1e-3, losses
    for section in sections:
        for name, r in section.items():
            assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], (name, r)
            assert r["steps"] > 0
    assert report["ratios"]["engine/numpy"] > 0
    if has_torch:
        assert report["ratios"]["engine/torch"] > 0 and report["lenet5"]["ratios"]["engine/torch"] > 0
        assert report["lenet5"]["grad_check_vs_torch"]
    assert "skipped" in report["gpu"] or report["gpu"]["card"]

    png = (tmp_path / "engine.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_linear_weight_gradient_is_laid_out_like_the_weight():
    """The benchmark's SGD update is fast only if dW is row-major like W (the fused Linear op,
    and MatMul.backward for the general case, compute it so); the values are those of G^T x."""
    import numpy as np

    from engine import Tensor, nn

    rng = np.random.default_rng(0)
    layer = nn.Linear(6, 4)
    x, G = rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    (layer(Tensor(x)) * Tensor(G)).sum().backward()
    assert layer.weight.grad.flags.c_contiguous
    np.testing.assert_allclose(layer.weight.grad, G.T @ x, rtol=1e-5, atol=1e-6)
