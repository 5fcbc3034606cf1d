"""Smoke test of benchmarks/engine.py: it runs, checks its gradients, and writes its results.

No timing is asserted (a shared CI machine is too noisy); only that every number is there.
"""
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"


def test_engine_benchmark_quick_run_writes_json_and_png(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gradients agree" in run.stdout

    report = json.loads((tmp_path / "engine.json").read_text())
    machine = report["machine"]
    for field in ("cpu", "cores", "numpy", "torch", "blas_threads", "date", "batch_size", "grad_check"):
        assert field in machine, field
    assert machine["batch_size"] == 128 and machine["grad_check"]["passed"]

    results = report["results"]
    expected = {"engine", "numpy"} | ({"torch"} if machine["torch"] else set())
    assert set(results) == expected
    for name, r in results.items():
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"], (name, r)
        assert r["steps"] > 0
    assert report["ratios"]["engine/numpy"] > 0
    if machine["torch"]:
        assert report["ratios"]["engine/torch"] > 0 and report["ratios"]["numpy/torch"] > 0

    png = (tmp_path / "engine.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_linear_weight_gradient_is_laid_out_like_the_weight():
    """The benchmark's SGD update is fast only if dW is row-major like W (MatMul.backward
    computes the gradient of W.T column-major for that); the values are those of G^T x."""
    import numpy as np

    from engine import Tensor, nn

    rng = np.random.default_rng(0)
    layer = nn.Linear(6, 4)
    x, G = rng.standard_normal((5, 6)).astype(np.float32), rng.standard_normal((5, 4)).astype(np.float32)
    (layer(Tensor(x)) * Tensor(G)).sum().backward()
    assert layer.weight.grad.flags.c_contiguous
    np.testing.assert_allclose(layer.weight.grad, G.T @ x, rtol=1e-5, atol=1e-6)
