"""Model parallelism through the unchanged runner, in-process (threads as ranks).

Every schedule (naive, GPipe, 1F1B, interleaved) for p = 2, 3, 4 stages and M = 1, 2, 4, 8
micro-batches, tensor parallelism at tp = 2 and 4, and every dp x pp x tp grid of 4 and 8
ranks equal the single process at the same global batch (float64 1e-10; float32 stated),
with SGD, momentum and Adam; bytes per role == formula; stash peaks == formula; bad input.
"""
import pathlib
import sys

import pytest

import collectives
from strategies import loop, train
from strategies.pipeline import schedules

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from saved_params import max_diff  # noqa: E402  (tests/mpi/saved_params.py)

COMMON = ["--quiet", "--dtype", "float64", "--model", "mlp7", "--epochs", "1", "--max-steps", "3",
          "--batch-size", "48"]
OPTIMIZERS = {"sgd": [], "momentum": ["--momentum", "0.9"], "adam": ["--optimizer", "adam", "--lr", "0.01"]}
FLOAT64_TOL, FLOAT32_TOL = 1e-10, 1e-6


@pytest.fixture(scope="module")
def data():
    return {dtype: loop.load_data(train.parse_args(["--dtype", dtype])) for dtype in ("float32", "float64")}


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    """The reference: one process, saved once per (optimizer, dtype)."""
    folder, saved = tmp_path_factory.mktemp("single"), {}

    def path(optimizer="sgd", dtype="float64"):
        if (optimizer, dtype) not in saved:
            saved[optimizer, dtype] = folder / f"{optimizer}-{dtype}.npz"
            run(data, "single", 1, *OPTIMIZERS[optimizer], "--dtype", dtype, save=saved[optimizer, dtype])
        return saved[optimizer, dtype]
    return path


def run(data, strategy, ranks, *extra, save=None, timeout=60):
    args = train.parse_args([*COMMON, "--strategy", strategy, *extra])
    args.save_params = save and str(save)
    records = collectives.spawn(lambda comm: train.run(args, comm, data[args.dtype]), ranks, timeout=timeout)
    assert "error" not in records[0], records[0]
    return records


def assert_bytes_match_formula(record):
    for role, entry in record["roles"].items():
        assert entry["bytes_sent_per_rank_per_step"] == pytest.approx(
            entry["formula_bytes_sent_per_rank_per_step"], rel=1e-12), role


def equals_single(data, single, tmp_path, strategy, ranks, *flags, optimizer="sgd", dtype="float64"):
    records = run(data, strategy, ranks, *flags, *OPTIMIZERS[optimizer], "--dtype", dtype,
                  save=tmp_path / "mp.npz")
    error = max_diff(tmp_path / "mp.npz", single(optimizer, dtype))
    assert {r["params_sha256"] for r in records} == {records[0]["params_sha256"]}
    assert_bytes_match_formula(records[0])
    return records[0], error


@pytest.mark.parametrize("micro", [1, 2, 4, 8])
@pytest.mark.parametrize("stages", [2, 3, 4])
@pytest.mark.parametrize("schedule", ["naive", "gpipe", "1f1b"])
def test_every_schedule_equals_the_single_process(data, single, tmp_path, schedule, stages, micro):
    record, error = equals_single(data, single, tmp_path, "pipeline", stages, "--schedule", schedule,
                                  "--micro-batches", str(micro))
    assert error <= FLOAT64_TOL, error
    peaks = record["stash_peak"]
    assert peaks == [schedules.expected_stash_peak(schedule, stages, micro, r) for r in range(stages)]


@pytest.mark.parametrize("stages, micro, chunks", [(2, 2, 2), (2, 4, 2), (4, 4, 2), (4, 8, 2), (2, 4, 3)])
def test_interleaved_equals_the_single_process(data, single, tmp_path, stages, micro, chunks):
    record, error = equals_single(data, single, tmp_path, "pipeline", stages, "--schedule", "interleaved",
                                  "--micro-batches", str(micro), "--chunks", str(chunks))
    assert error <= FLOAT64_TOL, error
    assert record["stash_peak"] == [schedules.expected_stash_peak("interleaved", stages, micro, r, chunks)
                                    for r in range(stages)]


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_momentum_and_adam_state_live_on_each_stage(data, single, tmp_path, optimizer):
    _, error = equals_single(data, single, tmp_path, "pipeline", 4, "--micro-batches", "4", optimizer=optimizer)
    assert error <= FLOAT64_TOL, error


def test_float32_pipeline_within_the_stated_tolerance(data, single, tmp_path):
    _, error = equals_single(data, single, tmp_path, "pipeline", 4, "--micro-batches", "4", dtype="float32")
    print(f"pipeline p=4 M=4 float32 vs single after 3 steps: max |diff| = {error:.2e}")
    assert error <= FLOAT32_TOL


@pytest.mark.parametrize("tp", [2, 4])
def test_tensor_parallel_equals_the_single_process(data, single, tmp_path, tp):
    _, error = equals_single(data, single, tmp_path, "tp", tp)
    assert error <= FLOAT64_TOL, error


GRIDS = [(d, p, t) for k in (4, 8) for d in (1, 2, 4, 8) for p in (1, 2, 4, 8) for t in (1, 2, 4, 8)
         if d * p * t == k]


@pytest.mark.parametrize("dp, pp, tp", GRIDS)
def test_every_grid_of_4_and_8_ranks_equals_the_single_process(data, single, tmp_path, dp, pp, tp):
    _, error = equals_single(data, single, tmp_path, "pipeline", dp * pp * tp, "--dp", str(dp), "--pp", str(pp),
                             "--tp", str(tp), "--micro-batches", "2")
    assert error <= FLOAT64_TOL, (dp, pp, tp, error)


def test_the_measured_bubble_of_emulated_compute_is_the_formula(data):
    """p = 4, M = 8, every forward 20 ms and backward 40 ms: (p - 1)/(M + p - 1) = 3/11."""
    record = run(data, "pipeline", 4, "--schedule", "gpipe", "--micro-batches", "8", "--max-steps", "1",
                 "--emulate-compute", "0.02,0.04", "--dtype", "float32")[0]
    formula = 3 / 11
    print(f"GPipe p=4 M=8 emulated: bubble per stage {record['bubble']} vs {formula:.3f}")
    assert all(abs(b - formula) <= 0.1 * formula for b in record["bubble"])


@pytest.mark.parametrize("ranks, flags, message", [
    (4, ["--pp", "3"], "dp x pp x tp = 1 x 3 x 1 = 3 ranks, but the job has 4"),
    (2, ["--micro-batches", "5"], "--micro-batches 5 must divide"),
    (4, ["--balance", "3,2,2"], "--balance 3,2,2 has 3 stages, the pipeline has 4"),
    (4, ["--balance", "3,3,3,3"], "sums to 12, the model has 13 layers"),
    (4, ["--model", "linear"], "more stages (4) than layers (1)"),
    (2, ["--chunks", "2"], "--chunks 2 is for --schedule interleaved only"),
    (4, ["--schedule", "interleaved", "--micro-batches", "2"], "a multiple of the 4 stages"),
    (4, ["--emulate-compute", "fast"], "--emulate-compute 'fast'"),
])
def test_bad_input_is_one_clear_error_on_every_rank(data, ranks, flags, message):
    args = train.parse_args([*COMMON, "--strategy", "pipeline", *flags])
    records = collectives.spawn(lambda comm: train.run(args, comm, data["float64"]), ranks, timeout=20)
    assert all(message in record.get("error", "") for record in records), records[0]


def test_a_cut_by_measured_time_is_rank_0s_on_every_rank(data, single, tmp_path, monkeypatch):
    """Each rank would time the layers differently: rank 0's balance is broadcast."""
    from strategies.pipeline import partition, strategy

    def balance_by_time(model, stages, sample):                 # a different cut on every rank
        import threading
        rank = int(threading.current_thread().name.split()[-1])
        return [2, 11] if rank == 0 else [4, 9]

    monkeypatch.setattr(partition, "balance_by_time", balance_by_time)
    assert strategy.partition is partition
    _, error = equals_single(data, single, tmp_path, "pipeline", 2, "--balance", "time")
    assert error <= FLOAT64_TOL
