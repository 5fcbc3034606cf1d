"""The parameter server on 4 ranks (1 server, 3 workers): sync, async, SSP, backup workers,
with and without a straggler; beside data parallelism and the cost model (MATH A2, A3, A10, E7).

    mpirun -n 4 python -m mpi4py -m benchmarks.parameter_server            # a few minutes
    mpirun -n 4 python -m mpi4py -m benchmarks.parameter_server --quick    # the test's smoke run

Writes <out>/parameter_server.json and parameter_server.png (default out: benchmarks/results).
Every run is the runner's (strategies.train.run) on the same model, data, seed and epochs: the
MLP on full Fashion-MNIST when it is installed (else the bundled subset), global batch 384
(128 rows per worker: at 32 rows a worker's compute is a quarter of its step on a 2-core
machine running 4 ranks, and a 3x slower compute is then only 1.5x slower steps). "Gradients
applied per second" is the server's rate of applied worker gradients (sync: W per step; backup
workers: W - b; async: one per push); "global batches per second" is the runner's steps.
Server 0 hands out the epoch's chunks (strategies/parameter_server/schedule.py), so under
ps-async the fast workers take the chunks the straggler does not get to, and with backup
workers the straggler skips to the current step. The straggler runs make worker rank 3 three
times slower (--slow-rank 3 --slow-factor 3: it sleeps twice its measured compute). The same goals are
measured with LeNet-5 (one epoch), whose convolutions make a worker's step compute-bound: on
2 cores shared by 4 ranks, the MLP's straggler gives the CPU it sleeps away to the others, so
sync loses about half, not two thirds, of its rate.

Every configuration runs --repeats times, in rounds (each round runs them all once), and the
JSON gives each goal's ratio per round (the median and the spread), with the machine's load.

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
from engine.process import configure_process
from strategies import loop, train
from strategies.parameter_server.cost import ps_step_seconds, ring_step_seconds

from benchmarks import measure
from benchmarks.mpi_runs import cpu_busy, on_first

ROOT = pathlib.Path(__file__).resolve().parents[1]
STRAGGLER = "--slow-rank 3 --slow-factor 3"
LENET, LENET_FLAGS = "lenet5: ", "--model lenet5 --epochs 1"     # compute-bound: where a straggler shows
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
    LENET + "ps-sync": (4, f"--strategy ps-sync {LENET_FLAGS}"),
    LENET + "ps-sync, straggler": (4, f"--strategy ps-sync {LENET_FLAGS} {STRAGGLER}"),
    LENET + "ps-sync --backup-workers 1, straggler": (4, f"--strategy ps-sync --backup-workers 1 {LENET_FLAGS} {STRAGGLER}"),
    LENET + "ps-async, straggler": (4, f"--strategy ps-async {LENET_FLAGS} {STRAGGLER}"),
}
WORKERS = [1, 2, 4, 8, 16, 32, 64]
GANTT = ("ps-sync, straggler", "ps-async, straggler")      # the runs whose timelines the JSON keeps


def rates(record):
    """(global batches per second, worker gradients applied per second) of a run."""
    seconds = record["train_seconds"]
    applied = record.get("updates_applied", record["steps"] * record["world_size"])   # dp: K per step
    return record["steps"] / seconds, applied / seconds


def run_all(comm, common, say):
    """One round: every configuration once -> {label: record} (on rank 0; None elsewhere)."""
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
                + (f"  mean staleness {r['mean_staleness']:.2f}  chunks {r['chunks_per_worker']}"
                   if "mean_staleness" in r else ""), flush=True)
    return records


def goals(records):
    """The issue's goals in one round of records: {name: (measured, goal, met)}."""
    steps = lambda label: rates(records[label])[0]
    applied = lambda label: rates(records[label])[1]
    accuracy = lambda label: records[label]["final_test_accuracy"]
    sync = "ps-sync, straggler"
    lenet = {f"lenet5, 1 epoch: {name}": value for name, value in (
        ("ps-sync with a straggler / without, batches/s (about 1/3)",
         (steps(LENET + sync) / steps(LENET + "ps-sync"), None)),
        ("ps-async / ps-sync with a straggler, gradients applied/s (>= 2)",
         (applied(LENET + "ps-async, straggler") / applied(LENET + sync), 2.0)),
        ("backup workers with a straggler / ps-sync without, batches/s (>= 0.8)",
         (steps(LENET + "ps-sync --backup-workers 1, straggler") / steps(LENET + "ps-sync"), 0.8)))}
    measured = {
        "ps-sync with a straggler / without, batches/s (about 1/3)": (steps(sync) / steps("ps-sync"), None),
        "ps-async / ps-sync with a straggler, gradients applied/s (>= 2)":
            (applied("ps-async, straggler") / applied(sync), 2.0),
        "backup workers with a straggler / ps-sync without, batches/s (>= 0.8)":
            (steps("ps-sync --backup-workers 1, straggler") / steps("ps-sync"), 0.8),
        "accuracy: ps-async --staleness-lr - ps-sync, straggler (|.| <= 0.01)":
            (accuracy("ps-async --staleness-lr, straggler") - accuracy(sync), 0.01),
        "accuracy: ps-ssp s = 2 - ps-sync, straggler (|.| <= 0.01)":
            (accuracy("ps-ssp --staleness 2, straggler") - accuracy(sync), 0.01),
        "accuracy: ps-sync - dp 3 ranks (same computation; float32 sums in another order: |.| <= 0.002)":
            (accuracy("ps-sync") - accuracy("dp, 3 ranks"), 0.002),
        **lenet,
    }
    met = lambda name, value, goal: (None if goal is None else
                                     abs(value) <= goal if "accuracy" in name else value >= goal)
    return {name: {"measured": value, "goal": goal, "met": met(name, value, goal)}
            for name, (value, goal) in measured.items()}


def spread(rounds):
    """Per goal: the value in each round, its median, min and max, and whether the median meets it."""
    table = {}
    for name in rounds[0]:
        values = [r[name]["measured"] for r in rounds]
        median, goal = float(numpy.median(values)), rounds[0][name]["goal"]
        met = (None if goal is None else abs(median) <= goal if "accuracy" in name else median >= goal)
        table[name] = {"per_round": values, "median": median, "min": min(values), "max": max(values),
                       "goal": goal, "median_met": met}
    return table


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
    reference = lambda k: runs[LENET + "ps-sync" if k.startswith(LENET) else "ps-sync"]   # same model
    for offset, key, name in ((-0.2, "steps_per_second", "global batches / s"),
                              (0.2, "gradients_per_second", "worker gradients applied / s")):
        speed_ax.bar(x + offset, [runs[k][key] / reference(k)[key] for k in labels], 0.4, label=name)
    for level, text in ((1 / 3, "1/3"), (0.8, "0.8")):
        speed_ax.axhline(level, color="grey", ls=":", lw=1)
        speed_ax.text(len(labels) - 0.5, level, text, fontsize=7, va="bottom", ha="right")
    speed_ax.set(xticks=x, ylabel="relative to ps-sync without a straggler (same model)",
                 title="throughput (training only), relative")
    speed_ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=7)
    speed_ax.legend(fontsize=8)
    for i, label in enumerate(k for k in labels if not k.startswith(LENET)):   # the MLP's epochs
        e = runs[label]["epochs"]
        acc_ax.plot([p["train_seconds"] for p in e], [p["test_accuracy"] for p in e], "o-", ms=3,
                    label=label, color=f"C{i % 10}")
    acc_ax.set(xlabel="training wall time (s)", ylabel="test accuracy", title="MLP: accuracy against wall time")
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
    measure.save_figure(fig, path, result["machine"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled subset, 10 steps")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of every configuration")
    parser.add_argument("--batch-size", type=int, default=384, help="the global batch (W = 3 must divide it)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    configure_process()
    comm = collectives.world()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    info = measure.machine_info("mpirun -n 4 python -m mpi4py -m benchmarks.parameter_server")
    full = measure.full_scale(args.quick)
    dataset = "fashion-mnist" if full else "mnist"
    common = (f"--model mlp --dataset {dataset} --batch-size {args.batch_size} --lr 0.1 --seed 0 --quiet "
              + ("--epochs 1 --max-steps 10" if args.quick else f"--epochs {args.epochs}"))
    say(f"{comm.size} ranks; {dataset}; {common}")
    rounds, loads = [], []
    for repeat in range(1 if args.quick else args.repeats):
        say(f"round {repeat + 1}", flush=True)
        loads.append(on_first(comm, 1, lambda sub: cpu_busy()))          # others sleep meanwhile
        records = run_all(comm, common, say)
        rounds.append(goals(records) if comm.rank == 0 and len(records) == len(RUNS) else None)
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
    summary = spread(rounds) if rounds[0] is not None else None
    for name, entry in (summary or {}).items():
        say(f"  {name}: median {entry['median']:.3f} (rounds {', '.join(f'{v:.3f}' for v in entry['per_round'])})"
            f"{'' if entry['median_met'] is None else ' MET' if entry['median_met'] else ' NOT MET'}")
    result = dict(machine=f"{info['cpu']}, {info['usable_cores']} cores, {comm.size} ranks", machine_info=info,
                  dataset=dataset, flags=common, repeats=len(rounds), goals=summary,
                  cpu_busy_before_each_round=loads, workers=comm.size - 1, gradient_bytes=n_bytes,
                  link=vars(link), cost_model=cost_model(link, n_bytes), measured_comm=measured,
                  runs={label: dict(flags=RUNS[label][1], ranks=RUNS[label][0],
                                    steps_per_second=rates(r)[0], gradients_per_second=rates(r)[1],
                                    **{k: v for k, v in r.items() if k != "timeline" or label in GANTT})
                        for label, r in records.items()})     # the last round's records
    measure.save_json(result, args.out / "parameter_server.json")
    plot(result, args.out / "parameter_server.png")
    say(f"wrote {args.out / 'parameter_server.json'} and parameter_server.png")


if __name__ == "__main__":
    main()
