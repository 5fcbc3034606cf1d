"""Every strategy check that needs real MPI processes, in one launch.

    mpirun -n 4 python -m mpi4py tests/mpi/strategy_checks.py --out /tmp/checks

Launched by tests/test_strategies_mpi.py at -n 2 and -n 4. Rank 0 prints one line per check
(with the measured error) and "PASS on K MPI ranks" at the end; any failed assertion aborts
every rank (python -m mpi4py). The single-process reference is computed by every rank on a
communicator of its own (``comm.split(rank)``), so nobody waits while it runs.

Checks (MATH A1, F10, F11):
  * dp for 50 steps == single process at the same global batch, float64, for every all-reduce:
    max |theta_dp - theta_single| <= 1e-10; float32 (ring) <= 1e-6 (rounding of float32 sums
    in a different order, amplified a little over 50 steps);
  * every rank holds bit-identical replicas after dp;
  * the same run twice gives bit-identical parameters;
  * local-sgd with H = 1 and plain SGD == dp (1e-10, float64);
  * measured bytes per rank per step == the formula (strategies/traffic.py), dp / local-sgd /
    gossip; gossip's consensus distance is > 0 for K >= 4 and 0 up to rounding for K = 2, 3;
  * dp --overlap (bucket all-reduces on a thread, started from gradient hooks) gives the same
    parameters bit for bit as dp with the same buckets, under real MPI threads;
  * dp --prune 0.9 == single --prune 0.9 (the same masks, agreed), 1e-10, weights still 90 % zero;
  * the process grid on MPI: every factorisation of K into dp x pp, each axis's members.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root

from engine.process import configure_process  # noqa: E402
from strategies import loop, train  # noqa: E402
from strategies.grid import Grid  # noqa: E402

from checks import reporter, run_saved  # noqa: E402  (tests/mpi/checks.py)
from saved_params import load, max_diff  # noqa: E402  (tests/mpi/saved_params.py)

import numpy  # noqa: E402

import collectives  # noqa: E402

STEPS = 50
FLOAT64_TOL, FLOAT32_TOL = 1e-10, 1e-6


def flags(strategy, dtype="float64", steps=STEPS, *extra):
    return train.parse_args(["--strategy", strategy, "--dtype", dtype, "--max-steps", str(steps),
                             "--epochs", "1", "--batch-size", "64", "--quiet", *extra])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    out = pathlib.Path(parser.parse_args().out)
    configure_process()
    comm = collectives.world()
    alone = comm.split(comm.rank)                    # a world of one, for the reference
    K, (say, ok) = comm.size, reporter(comm)
    data = {dtype: loop.load_data(flags("dp", dtype)) for dtype in ("float32", "float64")}

    def launch(args, on=comm, name=None):
        return run_saved(args, on, data[args.dtype], name and comm.rank == 0 and out / f"{name}.npz")

    # the reference: every rank alone, the whole global batch; rank 0's file is the one read
    for dtype in ("float64", "float32"):
        run_saved(flags("single", dtype), alone, data[dtype], comm.rank == 0 and out / f"single-{dtype}.npz")
    comm.barrier()

    hashes = {}
    for algorithm in ("ring", "tree", "recursive-doubling", "naive", "mpi", "auto"):
        record = launch(flags("dp", "float64", STEPS, "--algorithm", algorithm), name=f"dp-{algorithm}")
        error = max_diff(out / f"dp-{algorithm}.npz", out / "single-float64.npz") if comm.rank == 0 else 0.0
        assert error <= FLOAT64_TOL, f"dp {algorithm}: {error} > {FLOAT64_TOL}"
        ok(f"dp --algorithm {algorithm:<18} == single, {STEPS} steps, float64, max |diff|", error)
        hashes[algorithm] = record["params_sha256"]
        replicas = comm.mpi_comm.allgather(record["params_sha256"])   # each rank's own model
        assert len(set(replicas)) == 1, "replicas differ"
        formula = record["formula_bytes_per_rank_per_step"]
        if formula is not None:
            assert record["bytes_sent_per_rank_per_step"] == formula, (record["bytes_sent_per_rank_per_step"], formula)
    ok("every rank holds bit-identical replicas; bytes/rank/step == formula for the hand-written all-reduces")

    record = launch(flags("dp", "float32"), name="dp-float32")
    error = max_diff(out / "dp-float32.npz", out / "single-float32.npz") if comm.rank == 0 else 0.0
    assert error <= FLOAT32_TOL, f"dp float32: {error} > {FLOAT32_TOL}"
    ok(f"dp --algorithm ring == single, {STEPS} steps, float32, max |diff|", error)
    again = launch(flags("dp", "float32"), name="dp-float32-again")
    if comm.rank == 0:
        first, second = load(out / "dp-float32.npz"), load(out / "dp-float32-again.npz")
        assert first.keys() == second.keys() and all(numpy.array_equal(first[k], second[k]) for k in first)
    assert record["params_sha256"] == again["params_sha256"]
    ok("the same run twice: bit-identical parameters (sha256 " + record["params_sha256"][:12] + ")")

    local = launch(flags("local-sgd", "float64", STEPS, "--period", "1"), name="local-sgd-h1")
    error = max_diff(out / "local-sgd-h1.npz", out / "dp-ring.npz") if comm.rank == 0 else 0.0
    assert error <= FLOAT64_TOL, f"local-sgd H=1: {error}"
    assert local["bytes_sent_per_rank_per_step"] == local["formula_bytes_per_rank_per_step"]
    ok("local-sgd --period 1 (plain SGD) == dp, float64, max |diff|", error)

    local8 = launch(flags("local-sgd", "float32", 48, "--period", "8"))
    assert local8["bytes_sent_per_rank_per_step"] == local8["formula_bytes_per_rank_per_step"]
    ok(f"local-sgd --period 8: {local8['bytes_sent_per_rank_per_step']:.0f} B/rank/step == formula")

    gossip = launch(flags("gossip", "float32", 20))
    assert gossip["bytes_sent_per_rank_per_step"] == gossip["formula_bytes_per_rank_per_step"]
    distance = gossip["epochs"][-1]["consensus_distance"]
    assert (distance > 1e-6) if K >= 4 else (distance < 1e-6), distance
    ok(f"gossip: {gossip['bytes_sent_per_rank_per_step']:.0f} B/rank/step == formula, "
       f"consensus distance", distance)
    buckets = launch(flags("dp", "float32", 30, "--bucket-bytes", "65536"))
    overlapped = launch(flags("dp", "float32", 30, "--bucket-bytes", "65536", "--overlap"))
    assert overlapped["params_sha256"] == buckets["params_sha256"]
    assert overlapped["bytes_sent_per_rank"] == buckets["bytes_sent_per_rank"]
    ok("dp --overlap == dp with the same buckets, bit for bit (sha256 " + buckets["params_sha256"][:12] + ")")

    pruned = ["--prune", "0.9", "--momentum", "0.9"]                    # MATH A7 under A1
    run_saved(flags("single", "float64", 20, *pruned), alone, data["float64"],
              comm.rank == 0 and out / "single-pruned.npz")
    comm.barrier()
    record = launch(flags("dp", "float64", 20, *pruned), name="dp-pruned")
    error = max_diff(out / "dp-pruned.npz", out / "single-pruned.npz") if comm.rank == 0 else 0.0
    assert error <= FLOAT64_TOL and abs(record["sparsity"] - 0.9) < 1e-3, (error, record["sparsity"])
    ok(f"dp --prune 0.9 (momentum) == single with the same masks, sparsity {record['sparsity']:.3f}, "
       "max |diff|", error)

    for dp in [d for d in range(1, K + 1) if K % d == 0]:
        grid = Grid(comm, dp=dp, pp=K // dp)
        stages = comm.mpi_comm.allgather((grid.dp_rank, grid.pp_rank, grid.pp.rank, grid.dp.rank))
        assert stages == [(r // (K // dp), r % (K // dp), r % (K // dp), r // (K // dp)) for r in range(K)]
    ok(f"Grid(dp, pp) for every factorisation of {K}: coordinates and axis ranks as laid out")
    say(f"PASS on {K} MPI ranks", flush=True)


if __name__ == "__main__":
    main()
