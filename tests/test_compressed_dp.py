"""dp --compress through the runner, in-process: every compressor runs on 4 ranks with the
replicas identical and the bytes per step equal to its formula; the "none" compressor's
exchange is dp with one bucket bit for bit; ratio 1 top-k equals dp (float64 1e-10); bad flags.
"""
import json
import pathlib
import sys

import numpy as np
import pytest

import collectives
import engine.functional as F
from engine import manual_seed, models, optim
from strategies import loop, train
from strategies.compressed_dp import CompressedDataParallel
from strategies.compression import build
from strategies.data_parallel import DataParallel
from strategies.loader import RankLoader
from strategies.parameters import cast_model, flat_parameters

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from launch import launch, mpirun_path  # noqa: E402  (tests/mpi/launch.py)
from saved_params import max_diff  # noqa: E402  (tests/mpi/saved_params.py)

COMMON = ["--quiet", "--dtype", "float64", "--epochs", "1", "--max-steps", "6", "--batch-size", "64"]
FLAGS = {"fp16": [], "topk": ["--ratio", "0.05", "--error-feedback"], "randomk": ["--ratio", "0.1"],
         "qsgd": ["--levels", "8"], "sign": ["--error-feedback"], "powersgd": ["--rank", "2"],
         "topk-dgc": ["--ratio", "0.05", "--momentum-correction", "0.9", "--warmup-steps", "3"],
         "topk-noef": ["--ratio", "0.05", "--no-error-feedback"]}


@pytest.fixture(scope="module")
def data():
    return loop.load_data(train.parse_args(["--dtype", "float64"]))


def run(data, ranks, *extra, save=None):
    args = train.parse_args([*COMMON, "--strategy", "dp", *extra])
    args.save_params = save and str(save)
    return collectives.spawn(lambda comm: train.run(args, comm, data), ranks, timeout=60)


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_every_compressor_trains_with_identical_replicas_and_bytes_equal_to_its_formula(data, name):
    records = run(data, 4, "--compress", name.split("-")[0], *FLAGS[name])
    record = records[0]
    assert "error" not in record, record
    assert {r["params_sha256"] for r in records} == {record["params_sha256"]}    # one model everywhere
    for role, entry in record["roles"].items():
        assert entry["bytes_sent_per_rank_per_step"] == pytest.approx(
            entry["formula_bytes_sent_per_rank_per_step"], rel=1e-12), role
    dense = run(data, 4)[0]["bytes_sent_per_rank_per_step"]
    print(f"{name}: {record['bytes_sent_per_rank_per_step']:,.0f} B/rank/step, "
          f"{dense / record['bytes_sent_per_rank_per_step']:.1f}x fewer than dp, loss {record['final_loss']:.4f}")


def test_top_k_of_everything_is_dp(data, tmp_path):
    run(data, 4, save=tmp_path / "dp.npz")
    run(data, 4, "--compress", "topk", "--ratio", "1.0", save=tmp_path / "topk.npz")
    assert max_diff(tmp_path / "topk.npz", tmp_path / "dp.npz") <= 1e-10


def test_the_none_compressor_is_dp_with_one_bucket_bit_for_bit(data):
    X, y = data[0][:256], data[1][:256]

    def steps(comm, compressed):
        manual_seed(0)
        model = cast_model(models.build("mlp"), "float64")
        one_bucket = dict(bucket_bytes=1 << 30)
        strategy = (CompressedDataParallel(model, comm, build("none"), **one_bucket) if compressed
                    else DataParallel(model, comm, **one_bucket))
        opt = optim.SGD(strategy.parameters(), lr=0.1)
        for xb, yb in RankLoader(X, y, 64, strategy.local_rows(64)):
            strategy.train_step(opt, F.cross_entropy, xb, yb)
        return flat_parameters(model)

    plain = collectives.spawn(lambda comm: steps(comm, False), 4)
    compressed = collectives.spawn(lambda comm: steps(comm, True), 4)
    assert all(np.array_equal(a, b) for a, b in zip(plain, compressed))


@pytest.mark.parametrize("flags, message", [
    (["--compress", "topk", "--overlap"], "--overlap is for uncompressed dp"),
    (["--compress", "topk", "--ratio", "0"], "--compress topk:"),
    (["--compress", "powersgd", "--rank", "0"], "--compress powersgd:"),
])
def test_bad_compression_flags_are_one_clear_error(data, flags, message):
    records = run(data, 2, *flags)
    assert all(message in r.get("error", "") for r in records), records[0]


@pytest.mark.mpi
@pytest.mark.timeout(180)
@pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun")
def test_benchmark_quick_run_writes_json_and_png(tmp_path):
    done = launch("benchmarks.gradient_compression", 4, "--quick", "--out", tmp_path, timeout=170)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "gradient_compression.json").read_text())
    assert {"mlp: dp", "mlp: topk 1 % EF", "lenet5: powersgd r=2"} <= set(result["runs"])
    assert set(result["cost_model"]) >= {"dp", "topk 1 % EF", "powersgd r=2"}
    for run in result["runs"].values():
        for role, entry in run["roles"].items():
            assert entry["bytes_sent_per_rank_per_step"] == pytest.approx(
                entry["formula_bytes_sent_per_rank_per_step"], rel=1e-12), role
    assert (tmp_path / "gradient_compression.png").stat().st_size > 0


@pytest.mark.mpi
@pytest.mark.timeout(90)
@pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun")
@pytest.mark.parametrize("ranks", [2, 3, 5])
def test_every_compressor_under_mpirun(ranks):
    done = launch(pathlib.Path(__file__).resolve().parent / "mpi" / "compression_checks.py", ranks, timeout=80)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PASS on {ranks} MPI ranks" in done.stdout
