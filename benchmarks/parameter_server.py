"""The parameter server on 4 ranks (1 server, 3 workers): sync, async, SSP, backup workers,
with and without a straggler; beside data parallelism and the cost model (MATH A2, A3, A10, E7).

    mpirun -n 4 python -m mpi4py -m benchmarks.parameter_server            # a few minutes
    mpirun -n 4 python -m mpi4py -m benchmarks.parameter_server --quick    # the test's smoke run

Writes <out>/parameter_server.json and parameter_server.png (default out: benchmarks/results).
Every run is the runner's (strategies.train.run) on the same model, data, seed and epochs: the
MLP on full Fashion-MNIST when it is installed (else the bundled subset), global batch 96
(32 rows per worker). "Gradients applied per second" is the server's rate of applied worker
gradients (sync: W per step; backup workers: W - b; async: one per push); "global batches per
second" is the runner's steps.

What it cannot show yet: the runner hands every worker its rows of EVERY global batch, so a
straggler still computes all of its batches and an epoch lasts as long as the straggler takes,
whatever the server does with its gradients; async and backup workers only pay off once fast
workers may take more batches than slow ones (a server that hands out batches: issue 10). The straggler runs make worker rank 3 three times slower
(--slow-rank 3 --slow-factor 3: it sleeps twice its measured compute after each gradient).

Panels: throughput, accuracy against wall time, the staleness histogram of ps-async against
its prediction W - 1 (with W equal-speed workers each push finds the W - 1 others' updates
applied since its pull), and the cost model of one step (strategies/parameter_server/cost.py)
for W = 1 ... 64 workers, 1, 2 and 4 servers, against the ring, on the link measured here.
"""
import argparse
import pathlib

import numpy

import collectives
from collectives import costmodel
from engine.data.mnist import FASHION_MNIST_DIR
from engine.process import configure_process
from strategies import loop, train
from strategies.parameter_server.cost import ps_step_seconds, ring_step_seconds

from benchmarks import measure
from benchmarks.mpi_runs import on_first

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRAGGLER = "--slow-rank 3 --slow-factor 3"
RUNS = {                                   # label: (ranks, the runner's flags)
    "dp, 4 ranks": (4, "--strategy dp"),
    "dp, 3 ranks": (3, "--strategy dp"),
    "ps-sync": (4, "--strategy ps-sync"),
    "ps-async": (4, "--strategy ps-async"),
    "ps-sync, straggler": (4, f"--strategy ps-sync {STRAGGLER}"),
    "ps-sync --backup-workers 1, straggler": (4, f"--strategy ps-sync --backup-workers 1 {STRAGGLER}"),
    "ps-async, straggler": (4, f"--strategy ps-async {STRAGGLER}"),
    "ps-async --staleness-lr, straggler": (4, f"--strategy ps-async --staleness-lr {STRAGGLER}"),
    "ps-ssp --staleness 2, straggler": (4, f"--strategy ps-ssp --staleness 2 {STRAGGLER}"),
}
WORKERS = [1, 2, 4, 8, 16, 32, 64]


def rates(record):
    """(global batches per second, worker gradients applied per second) of a run."""
    seconds = record["train_seconds"]
    applied = record.get("updates_applied", record["steps"])
    return record["steps"] / seconds, applied / seconds


def run_all(comm, common, say):
    data, records = None, {}
    for label, (ranks, flags) in RUNS.items():
        if ranks > comm.size:
            continue
        args = train.parse_args(f"{common} {flags}".split())
        data = data or loop.load_data(args)
        records[label] = on_first(comm, ranks, lambda sub: train.run(args, sub, data))
        if comm.rank == 0:
            r = records[label]
            steps, applied = rates(r)
            say(f"  {label:<40} acc {r['final_test_accuracy']:.4f}  {r['train_seconds']:6.2f} s  "
                f"{steps:7.1f} batches/s  {applied:7.1f} gradients/s"
                + (f"  mean staleness {r['mean_staleness']:.2f}" if "mean_staleness" in r else ""), flush=True)
    return records


def cost_model(link, n_bytes):
    """Seconds of one step's communication, W = 1 ... 64, for 1, 2, 4 servers and the ring."""
    lines = {f"{S} server{'s' if S > 1 else ''}": [ps_step_seconds(W, S, n_bytes, link) for W in WORKERS]
             for S in (1, 2, 4)}
    lines["ring (no server)"] = [ring_step_seconds(W, n_bytes, link) for W in WORKERS]
    return lines


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ((speed_ax, acc_ax), (stale_ax, cost_ax)) = plt.subplots(2, 2, figsize=(15, 9))
    runs = result["runs"]
    labels = list(runs)
    x = numpy.arange(len(labels))
    speed_ax.bar(x - 0.2, [runs[k]["steps_per_second"] for k in labels], 0.4, label="global batches / s")
    speed_ax.bar(x + 0.2, [runs[k]["gradients_per_second"] for k in labels], 0.4, label="worker gradients applied / s")
    speed_ax.set(xticks=x, ylabel="per second", title="throughput (training only)")
    speed_ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=7)
    speed_ax.legend(fontsize=8)
    for i, label in enumerate(labels):
        e = runs[label]["epochs"]
        acc_ax.plot([p["train_seconds"] for p in e], [p["test_accuracy"] for p in e], "o-", ms=3,
                    label=label, color=f"C{i % 10}")
    acc_ax.set(xlabel="training wall time (s)", ylabel="test accuracy", title="accuracy against wall time")
    acc_ax.legend(fontsize=7)
    for label in [k for k in labels if k.startswith("ps-async")]:
        histogram = {int(t): c for t, c in runs[label]["staleness_histogram"].items()}
        taus = sorted(histogram)
        total = sum(histogram.values())
        stale_ax.plot(taus, [histogram[t] / total for t in taus], "o-", label=label)
    stale_ax.axvline(result["workers"] - 1, color="grey", ls="--", label="W - 1 (equal-speed workers)")
    stale_ax.set(xlabel="staleness tau = server version - version computed on", ylabel="fraction of updates",
                 title="staleness of ps-async")
    stale_ax.legend(fontsize=8)
    for style, (name, seconds) in zip(("-", "--", "-.", ":"), result["cost_model"].items()):
        cost_ax.loglog(WORKERS, [s * 1e3 for s in seconds], style, label=name)
    for label, point in result["measured_comm"].items():
        cost_ax.plot(point["workers"], point["seconds"] * 1e3, "o", label=f"measured: {label}")
    cost_ax.set(xlabel="workers W", ylabel="ms of communication per step",
                title=f"cost model on this machine's link, n = {result['gradient_bytes']:,} B")
    cost_ax.legend(fontsize=7)
    for ax in (speed_ax, acc_ax, stale_ax, cost_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(result["machine"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled subset, 1 epoch, 40 steps")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    configure_process()
    comm = collectives.world()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    info = measure.machine_info("mpirun -n 4 python -m mpi4py -m benchmarks.parameter_server")
    full = not args.quick and pathlib.Path(FASHION_MNIST_DIR).is_dir()
    dataset = "fashion-mnist" if full else "mnist"
    common = (f"--model mlp --dataset {dataset} --batch-size 96 --lr 0.1 --seed 0 --quiet "
              + ("--epochs 1 --max-steps 40" if args.quick else f"--epochs {args.epochs}"))
    say(f"{comm.size} ranks; {dataset}; {common}")
    records = run_all(comm, common, say)
    link = on_first(comm, 2, lambda sub: costmodel.measure_link(sub, repeats=20))
    if comm.rank != 0:
        return
    n_bytes = records["ps-sync"]["n_params"] * 4
    measured = {}
    for label in ("ps-sync", "dp, 3 ranks"):
        r = records[label]
        per_step = (r["time_split"]["worker"]["push"] + r["time_split"]["worker"]["pull"]) / r["steps"] \
            if "time_split" in r else r["comm_seconds_per_rank"] / r["steps"]
        measured[label] = {"workers": 3, "seconds": per_step}
    result = dict(machine=f"{info['cpu']}, {info['usable_cores']} cores, {comm.size} ranks", machine_info=info,
                  dataset=dataset, flags=common, workers=comm.size - 1, gradient_bytes=n_bytes,
                  link=vars(link), cost_model=cost_model(link, n_bytes), measured_comm=measured,
                  runs={label: dict(flags=RUNS[label][1], ranks=RUNS[label][0],
                                    steps_per_second=rates(r)[0], gradients_per_second=rates(r)[1], **r)
                        for label, r in records.items()})
    measure.save_json(result, args.out / "parameter_server.json")
    plot(result, args.out / "parameter_server.png")
    say(f"wrote {args.out / 'parameter_server.json'} and parameter_server.png")


if __name__ == "__main__":
    main()
