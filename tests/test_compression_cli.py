"""The compression command line (python -m engine.compress) and the benchmark's smoke run:
a model saved by --save-params is pruned, shared, Huffman-coded and quantized, each stage's
bytes measured from the files written, and the table is consistent with itself."""
import json
import subprocess
import sys

import pytest

from strategies import train

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "lenet300.npz"
    args = train.parse_args(["--strategy", "single", "--model", "lenet300", "--epochs", "1", "--max-steps", "40",
                             "--quiet", "--save-params", str(path)])
    import collectives
    collectives.spawn(lambda comm: train.run(args, comm), 1)
    return path


def test_the_command_line_compresses_a_saved_model_stage_by_stage(saved, tmp_path):
    table = tmp_path / "table.json"
    done = subprocess.run([sys.executable, "-m", "engine.compress", "--params", str(saved), "--model", "lenet300",
                           "--prune", "0.9", "--fine-tune-epochs", "1", "--share-bits", "5", "--quantize",
                           "--out", str(tmp_path / "files"), "--json", str(table)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {row["stage"].split()[0]: row for row in json.loads(table.read_text())}
    assert list(rows) == ["float32", "pruned", "shared,", "+", "int8"]
    assert rows["pruned"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert rows["float32"]["bytes"] > rows["pruned"]["bytes"] > rows["shared,"]["bytes"] > rows["+"]["bytes"]
    assert rows["+"]["ratio"] > 20 and rows["int8"]["ratio"] > 3.5
    assert all(0.1 < row["test_accuracy"] <= 1 for row in rows.values())
    assert (tmp_path / "files" / "huffman.bin").stat().st_size == rows["+"]["bytes"]


def test_a_bad_prune_fraction_is_a_usage_error(saved):
    done = subprocess.run([sys.executable, "-m", "engine.compress", "--params", str(saved), "--model", "lenet300",
                           "--prune", "1.5"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--prune must be in [0, 1), got 1.5" in done.stderr


@pytest.mark.timeout(180)
def test_benchmark_quick_run_writes_json_and_png(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.compression", "--quick", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "compression.json").read_text())
    assert set(result["models"]) == {"lenet300", "lenet5"}
    for entry in result["models"].values():
        assert set(entry["pruning"]) == {"one-shot", "iterative", "gradual"}
        assert all(abs(p["kept"] - (1 - p["sparsity"])) < 2e-3 for c in entry["pruning"].values() for p in c)
        assert entry["int8"]["float32"]["bytes"] > 3 * entry["int8"]["per-channel minmax"]["bytes"]
    assert (tmp_path / "compression.png").stat().st_size > 0
