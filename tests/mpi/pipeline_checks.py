"""Every model-parallel check that needs real MPI processes, in one launch.

    mpirun -n 4 python -m mpi4py tests/mpi/pipeline_checks.py --out /tmp/pp          # the checks
    mpirun -n 4 python -m mpi4py tests/mpi/pipeline_checks.py --out /tmp/pp --fail 2  # rank 2 raises

Launched by tests/test_pipeline_mpi.py. Rank 0 prints one line per check (with the measured
number) and "PASS on K MPI ranks" at the end; a failed assertion aborts every rank
(python -m mpi4py). The single-process reference runs on every rank alone (comm.split(rank)).

Checks (MATH A4, A5), mlp7, global batch 48, 3 steps, float64:
  * --strategy pipeline on all K ranks with naive, gpipe, 1f1b (M = 4) and interleaved (v = 2,
    M = 2K) == single (1e-10), bytes per stage == formula, stash peaks == formula;
  * --strategy tp on K ranks, and every dp x pp x tp grid of K ranks == single (1e-10);
  * GPipe, M = 8, --emulate-compute 0.02,0.04: the measured bubble of every stage within 10 % of
    (K - 1)/(8 + K - 1).
``--fail r``: world rank r raises in its second train_step; the job must exit non-zero.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root

import collectives  # noqa: E402
from engine.process import configure_process  # noqa: E402
from strategies import STRATEGIES, loop, train  # noqa: E402
from strategies.pipeline import schedules  # noqa: E402
from strategies.pipeline.strategy import ModelParallel  # noqa: E402

from checks import reporter, run_saved  # noqa: E402  (tests/mpi/checks.py)
from faults import failing  # noqa: E402  (tests/mpi/faults.py)
from saved_params import max_diff  # noqa: E402  (tests/mpi/saved_params.py)

TOL = 1e-10


def flags(strategy, *extra):
    return train.parse_args(["--strategy", strategy, "--model", "mlp7", "--dtype", "float64", "--max-steps", "3",
                             "--epochs", "1", "--batch-size", "48", "--quiet", *extra])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail", type=int, default=None)
    options = parser.parse_args()
    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    configure_process()
    comm = collectives.world()
    K, (say, _) = comm.size, reporter(comm)
    data = loop.load_data(flags("single"))

    def launch(args, on=comm, name=None):
        return run_saved(args, on, data, name and comm.rank == 0 and out / f"{name}.npz")

    def equal(strategy, *extra):
        name = f"{strategy}-{'-'.join(extra)}".replace("--", "")
        record = launch(flags(strategy, *extra), name=name)
        error = max_diff(out / f"{name}.npz", out / "single.npz") if comm.rank == 0 else 0.0
        assert error <= TOL, f"{strategy} {extra}: {error}"
        for role, entry in record["roles"].items():
            measured, formula = entry["bytes_sent_per_rank_per_step"], entry["formula_bytes_sent_per_rank_per_step"]
            assert abs(measured - formula) <= 1e-9 * formula, (role, measured, formula)
        say(f"ok  {strategy} {' '.join(extra)}: == single (max |diff| {error:.1e}), bytes per role == formula",
            flush=True)
        return record

    if options.fail is not None:
        STRATEGIES[ModelParallel.name] = failing(ModelParallel, options.fail, step=1)   # its second step
        launch(flags("pipeline", "--micro-batches", "2"))
        return

    alone = comm.split(comm.rank)
    launch(flags("single"), alone, "single")
    comm.barrier()
    for schedule in ("naive", "gpipe", "1f1b"):
        record = equal("pipeline", "--schedule", schedule, "--micro-batches", "4")
        assert record["stash_peak"] == [schedules.expected_stash_peak(schedule, K, 4, r) for r in range(K)]
    if 2 * 2 * K <= 13 * 2:
        equal("pipeline", "--schedule", "interleaved", "--micro-batches", str(2 * K), "--chunks", "2")
    equal("tp")
    for dp in range(1, K + 1):
        for pp in range(1, K + 1):
            if K % (dp * pp) == 0:
                tp = K // (dp * pp)
                equal("pipeline", "--dp", str(dp), "--pp", str(pp), "--tp", str(tp), "--micro-batches", "2")
    record = launch(train.parse_args(["--strategy", "pipeline", "--model", "mlp7", "--schedule", "gpipe",
                                      "--micro-batches", "8", "--max-steps", "1", "--batch-size", "64",
                                      "--emulate-compute", "0.02,0.04", "--quiet"]))
    formula = (K - 1) / (8 + K - 1)
    assert all(abs(b - formula) <= 0.1 * formula for b in record["bubble"]), (record["bubble"], formula)
    say(f"ok  GPipe M=8 emulated: bubble per stage {[round(b, 3) for b in record['bubble']]} vs {formula:.3f}")
    say(f"PASS on {K} MPI ranks", flush=True)


if __name__ == "__main__":
    main()
