"""Every parameter-server check that needs real MPI processes, in one launch.

    mpirun -n 4 python -m mpi4py tests/mpi/ps_checks.py --out /tmp/ps        # the checks
    mpirun -n 4 python -m mpi4py tests/mpi/ps_checks.py --out /tmp/ps --fail 2  # rank 2 raises

Launched by tests/test_parameter_server_mpi.py. Rank 0 prints one line per check (with the
measured number) and "PASS on K MPI ranks" at the end; a failed assertion aborts every rank
(python -m mpi4py). The single-process reference runs on every rank alone (comm.split(rank)).

Checks (MATH A2, A3, E7), 12 steps at global batch 96 (one rank of K = 4 serving: E7's 1 + 3):
  * ps-sync == single, float64 1e-10, SGD / momentum / Adam, --servers 1 and 2; float32 measured
    (<= 1e-6); bytes per role == formula;
  * ps-ssp --staleness 0 == ps-sync (plain SGD), 1e-10;
  * ps-async and ps-ssp: staleness histogram sums to steps x W x S, SSP replies never more than
    s clocks ahead, mean staleness printed, bytes == formula;
  * ps-sync --backup-workers 1 with a 4x slower worker: W - 1 gradients applied per step (one
    server), every push applied or dropped, nothing left in flight, bytes == formula.
``--fail r``: world rank r raises in its third train_step; the job must exit non-zero.
"""
import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root

import collectives  # noqa: E402
from engine.process import configure_process  # noqa: E402
from strategies import STRATEGIES, loop, train  # noqa: E402
from strategies.parameter_server import PSSync  # noqa: E402

from checks import reporter, run_saved  # noqa: E402  (tests/mpi/checks.py)
from faults import failing  # noqa: E402  (tests/mpi/faults.py)
from saved_params import max_diff  # noqa: E402  (tests/mpi/saved_params.py)

STEPS, FLOAT64_TOL, FLOAT32_TOL = 12, 1e-10, 1e-6
OPTIMIZERS = {"sgd": [], "momentum": ["--momentum", "0.9"], "adam": ["--optimizer", "adam", "--lr", "0.01"]}


def flags(strategy, dtype="float64", *extra):
    return train.parse_args(["--strategy", strategy, "--dtype", dtype, "--max-steps", str(STEPS),
                             "--epochs", "2", "--batch-size", "96", "--quiet", *extra])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--fail", type=int, default=None)
    options = parser.parse_args()
    out = pathlib.Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    configure_process()
    comm = collectives.world()
    K, (say, ok) = comm.size, reporter(comm)
    data = {dtype: loop.load_data(flags("single", dtype)) for dtype in ("float32", "float64")}

    def launch(args, on=comm, name=None):
        return run_saved(args, on, data[args.dtype], name and comm.rank == 0 and out / f"{name}.npz")

    def bytes_match(record):
        for role, entry in record["roles"].items():
            assert entry["bytes_sent_per_rank_per_step"] == entry["formula_bytes_sent_per_rank_per_step"], role
        return {role: entry["bytes_sent_per_rank_per_step"] for role, entry in record["roles"].items()}

    if options.fail is not None:
        STRATEGIES[PSSync.name] = failing(PSSync, options.fail, step=2)     # in its third step
        launch(flags("ps-sync"))
        return

    alone = comm.split(comm.rank)                                  # a world of one: the reference
    for dtype, optimizer in [("float64", o) for o in OPTIMIZERS] + [("float32", "sgd")]:
        launch(flags("single", dtype, *OPTIMIZERS[optimizer]), alone, f"single-{dtype}-{optimizer}")
    comm.barrier()
    for servers in (1, 2):
        S = ["--servers", str(servers)]
        for optimizer, extra in OPTIMIZERS.items():
            record = launch(flags("ps-sync", "float64", *S, *extra), name=f"sync-{servers}-{optimizer}")
            error = max_diff(out / f"sync-{servers}-{optimizer}.npz", out / f"single-float64-{optimizer}.npz") \
                if comm.rank == 0 else 0.0
            assert error <= FLOAT64_TOL, f"ps-sync S={servers} {optimizer}: {error}"
            sent = bytes_match(record)
            ok(f"ps-sync --servers {servers} {optimizer:<8} == single, float64, bytes/step {sent} == formula, "
               "max |diff|", error)
        launch(flags("ps-sync", "float32", *S), name=f"sync-{servers}-float32")
        error = max_diff(out / f"sync-{servers}-float32.npz", out / "single-float32-sgd.npz") if comm.rank == 0 else 0.0
        assert error <= FLOAT32_TOL, f"ps-sync float32: {error}"
        ok(f"ps-sync --servers {servers} == single, float32, max |diff|", error)
        launch(flags("ps-ssp", "float64", *S, "--staleness", "0"), name=f"ssp0-{servers}")
        error = max_diff(out / f"ssp0-{servers}.npz", out / f"sync-{servers}-sgd.npz") if comm.rank == 0 else 0.0
        assert error <= FLOAT64_TOL, f"ps-ssp s=0: {error}"
        ok(f"ps-ssp --staleness 0 --servers {servers} == ps-sync (plain SGD), max |diff|", error)
        W = K - servers
        for strategy, extra in (("ps-async", []), ("ps-ssp", ["--staleness", "1"])):
            record = launch(flags(strategy, "float64", *S, *extra))
            assert sum(record["staleness_histogram"].values()) == STEPS * W * servers
            if strategy == "ps-ssp":
                assert max(map(int, record["reply_clock_leads"])) <= 1
            sent = bytes_match(record)
            ok(f"{strategy} {' '.join(extra) or ''} --servers {servers}: {STEPS * W * servers} updates, "
               f"histogram {record['staleness_histogram']}, bytes/step {sent} == formula, mean staleness",
               record["mean_staleness"])
        if W >= 2:
            record = launch(flags("ps-sync", "float64", *S, "--backup-workers", "1",
                                  "--slow-rank", str(servers), "--slow-factor", "4"))
            applied, dropped = record["updates_applied"], record["gradients_dropped"]
            pushes = sum(record["chunks_per_worker"].values())
            assert applied + dropped == pushes * servers, (applied, dropped, pushes)  # each push: one or the other
            assert applied <= STEPS * (W - 1) * servers and (servers > 1 or applied == STEPS * (W - 1))
            bytes_match(record)
            ok(f"ps-sync --backup-workers 1 --servers {servers}, rank {servers} 4x slower: "
               f"chunks {record['chunks_per_worker']}, {applied} applied, {dropped} dropped, bytes == formula")
    say(f"PASS on {K} MPI ranks", flush=True)


if __name__ == "__main__":
    main()
