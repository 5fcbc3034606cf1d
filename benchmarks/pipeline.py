"""Pipeline and tensor parallelism on 4 ranks: throughput, the bubble against M, memory per
stage, and Gantt charts measured beside simulated (MATH A4, A5).

    mpirun -n 4 python -m mpi4py -m benchmarks.pipeline            # a few minutes
    mpirun -n 4 python -m mpi4py -m benchmarks.pipeline --quick    # the test's smoke run

Writes <out>/pipeline.json, pipeline.png and pipeline_gantt.png (default out: benchmarks/results).

  throughput   the 7-layer MLP (mlp7) at global batch 128, M = 4, one epoch of full
               Fashion-MNIST (else the bundled subset): single, dp2, pp2 and pp4 (naive,
               GPipe, 1F1B), pp2 cut by measured time, dp2 x pp2, tp2; and single and pp2 at
               batch 1024 (micro-batches of 256 rows, where compute outweighs the per-op cost);
               samples/s in --repeats rounds (the median, the spread), each configuration's
               ratio to single at its batch and to the naive schedule of its p
  bubble       GPipe and 1F1B at p = 2, 4 for M = 1 ... 32, one step with --emulate-compute
               (every forward F, every backward 2F seconds, a sleep) so that 4 stages on 2 cores
               show the schedule: measured per stage against (p - 1)/(M + p - 1) and the simulator
  memory       stash peaks per stage (micro-batches whose activations are held) GPipe vs 1F1B,
               p = 4, M = 8, and the bytes of the stashed stage inputs
  gantt        naive / GPipe / 1F1B / interleaved (v = 2) at p = 4, M = 8: the measured timeline
               beside the simulated one with the same costs
"""
import argparse
import pathlib

import numpy

import collectives
from engine.process import configure_process
from strategies import loop, train
from strategies.pipeline import gantt, schedules, simulator

from benchmarks import measure
from benchmarks.mpi_runs import cpu_busy, on_first

ROOT = pathlib.Path(__file__).resolve().parents[1]
THROUGHPUT = {                      # label: (ranks, flags)
    "single": (1, "--strategy single"),
    "dp2": (2, "--strategy dp"),
    **{f"pp{p} {s}": (p, f"--strategy pipeline --schedule {s}") for p in (2, 4) for s in ("naive", "gpipe", "1f1b")},
    "pp2 gpipe, balance time": (2, "--strategy pipeline --schedule gpipe --balance time"),
    "dp2 x pp2 1f1b": (4, "--strategy pipeline --dp 2 --pp 2 --schedule 1f1b"),
    "tp2": (2, "--strategy tp"),
    **{f"{label}, B 1024": (ranks, f"{flags} --batch-size 1024") for label, (ranks, flags) in (
        ("single", (1, "--strategy single")), ("pp2 gpipe", (2, "--strategy pipeline --schedule gpipe")),
        ("pp2 1f1b", (2, "--strategy pipeline --schedule 1f1b")),
        ("pp2 gpipe, balance time", (2, "--strategy pipeline --schedule gpipe --balance time")))},
}
MICRO = [1, 2, 4, 8, 16, 32]
EMULATE = 0.01                      # seconds per emulated forward (backward: twice)


def runner(comm, ranks, flags, data):
    args = train.parse_args(flags.split())
    return on_first(comm, ranks, lambda sub: train.run(args, sub, data))


def throughput(comm, common, data, repeats, say):
    rounds = []
    for repeat in range(repeats):
        busy = on_first(comm, 1, lambda sub: cpu_busy())
        rates = {}
        for label, (ranks, flags) in THROUGHPUT.items():
            if ranks <= comm.size:
                r = runner(comm, ranks, f"{common} {flags}", data)
                if comm.rank == 0:
                    rates[label] = r["samples_per_second"]
                    say(f"  round {repeat + 1}  {label:<16} {rates[label]:9,.0f} samples/s  acc {r['final_test_accuracy']:.4f}",
                        flush=True)
        rounds.append({"cpu_busy_before": busy, "samples_per_second": rates})
    return rounds


def bubble_runs(comm, data, quick, say):
    """{schedule: {p: {M: {"measured": [per stage], "simulated": float, "formula": float}}}}."""
    table, memory = {}, {}
    for schedule in ("gpipe", "1f1b"):
        for p in (2, 4):
            for M in (MICRO[:3] if quick else MICRO):
                flags = (f"--strategy pipeline --model mlp7 --schedule {schedule} --micro-batches {M} "
                         f"--batch-size {2 * max(MICRO)} --max-steps 1 --epochs 1 --quiet "
                         f"--emulate-compute {EMULATE},{2 * EMULATE}")
                r = runner(comm, p, flags, data)
                if comm.rank != 0:
                    continue
                sim = simulator.simulate(schedules.build(schedule, p, M), EMULATE, 2 * EMULATE)
                table.setdefault(schedule, {}).setdefault(str(p), {})[str(M)] = {
                    "measured": r["bubble"], "simulated": sim["bubble"], "formula": (p - 1) / (M + p - 1)}
                if p == 4 and M == (4 if quick else 8):
                    memory[schedule] = {"stash_peak": r["stash_peak"], "stash_peak_bytes": r["stash_peak_bytes"]}
                say(f"  bubble {schedule:<6} p={p} M={M:<3} measured {numpy.round(r['bubble'], 3).tolist()}"
                    f"  formula {(p - 1) / (M + p - 1):.3f}", flush=True)
    return table, memory


def gantt_runs(comm, data, say):
    """Measured and simulated timelines at p = 4, M = 8 (interleaved: v = 2, half the cost per chunk)."""
    charts = {}
    for schedule in ("naive", "gpipe", "1f1b", "interleaved"):
        v = 2 if schedule == "interleaved" else 1
        f, b = EMULATE / v, 2 * EMULATE / v
        flags = (f"--strategy pipeline --model mlp7 --schedule {schedule} --micro-batches 8 --batch-size 64 "
                 f"--max-steps 1 --epochs 1 --quiet --emulate-compute {f},{b}")
        r = runner(comm, 4, flags, data)
        if comm.rank == 0:
            sim = simulator.simulate(schedules.build(schedule, 4, 8, v), f, b)
            charts[schedule] = {"measured": r["timeline"], "simulated": [[list(e) for e in rank] for rank in sim["events"]],
                                "measured_bubble": r["bubble"], "simulated_bubble": sim["bubble"]}
    return charts


def goals(rounds):
    """Per round: pp2 (GPipe, 1F1B) / single, and every configuration / the naive one of its p."""
    out = []
    for r in rounds:
        s = r["samples_per_second"]
        single = lambda k: "single, B 1024" if k.endswith("B 1024") else "single"
        ratio = {f"{k} / {single(k)}": s[k] / s[single(k)] for k in s if not k.startswith("single")}
        for k in s:
            naive = f"{k.split()[0]} naive"
            if k.startswith("pp") and "naive" not in k and not k.endswith("B 1024"):
                ratio[f"{k} / {naive}"] = s[k] / s[naive]
        out.append(ratio)
    names = out[0]
    return {name: {"per_round": [o[name] for o in out], "median": float(numpy.median([o[name] for o in out]))}
            for name in names}


def plot(result, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (speed_ax, bubble_ax, memory_ax) = plt.subplots(1, 3, figsize=(18, 5))
    medians = {k: numpy.median([r["samples_per_second"][k] for r in result["throughput"]])
               for k in result["throughput"][0]["samples_per_second"]}
    labels = list(medians)
    reference = lambda k: medians["single, B 1024" if k.endswith("B 1024") else "single"]
    speed_ax.bar(range(len(labels)), [medians[k] / reference(k) for k in labels])
    speed_ax.axhline(1, color="grey", ls=":")
    speed_ax.set(xticks=range(len(labels)), ylabel="samples/s relative to single at the same batch (median)",
                 title="mlp7, global batch 128 (and 1024), M = 4")
    speed_ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    Ms = numpy.arange(1, max(MICRO) + 1)
    for p, color in ((2, "C0"), (4, "C1")):
        bubble_ax.plot(Ms, (p - 1) / (Ms + p - 1), color=color, label=f"(p-1)/(M+p-1), p = {p}")
        for schedule, marker in (("gpipe", "o"), ("1f1b", "s")):
            points = result["bubble"].get(schedule, {}).get(str(p), {})
            xs = [int(M) for M in points]
            bubble_ax.plot(xs, [numpy.mean(points[str(M)]["measured"]) for M in xs], marker, color=color,
                           mfc="none", label=f"measured {schedule}, p = {p}")
            bubble_ax.plot(xs, [numpy.mean(points[str(M)]["simulated"]) for M in xs], "x", color=color)
    bubble_ax.set(xscale="log", xlabel="micro-batches M", ylabel="bubble (idle share of a step)",
                  title="bubble: formula (line), simulated (x), measured (open marks, emulated compute)")
    bubble_ax.legend(fontsize=7)
    for offset, (schedule, entry) in zip((-0.2, 0.2), result["memory"].items()):
        memory_ax.bar(numpy.arange(4) + offset, entry["stash_peak"], 0.4, label=schedule)
    memory_ax.set(xticks=range(4), xlabel="stage", ylabel="micro-batches stashed at the peak",
                  title="memory per stage, p = 4, M = 8 (GPipe M, 1F1B p - stage)")
    memory_ax.legend()
    measure.save_figure(fig, out / "pipeline.png", result["machine"])
    fig, axes = plt.subplots(4, 2, figsize=(16, 12))
    for row, (schedule, chart) in zip(axes, result["gantt"].items()):
        gantt.draw(row[0], chart["measured"], title=f"{schedule}: measured (bubble {numpy.mean(chart['measured_bubble']):.2f})")
        gantt.draw(row[1], chart["simulated"], title=f"{schedule}: simulated (bubble {numpy.mean(chart['simulated_bubble']):.2f})")
    measure.save_figure(fig, out / "pipeline_gantt.png", dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled subset, few steps, M <= 4")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    configure_process()
    comm = collectives.world()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    full = measure.full_scale(args.quick)
    dataset = "fashion-mnist" if full else "mnist"
    common = (f"--model mlp7 --dataset {dataset} --batch-size 128 --micro-batches 4 --lr 0.1 --seed 0 --quiet "
              + ("--epochs 1 --max-steps 10" if args.quick else "--epochs 1"))
    data = loop.load_data(train.parse_args(common.split()))
    small = data if dataset == "mnist" else loop.load_data(train.parse_args([]))
    say(f"{comm.size} ranks; {dataset}; {common}", flush=True)
    rounds = throughput(comm, common, data, 1 if args.quick else args.repeats, say)
    bubble, memory = bubble_runs(comm, small, args.quick, say)
    charts = gantt_runs(comm, small, say)
    if comm.rank != 0:
        return
    info = measure.machine_info("mpirun -n 4 python -m mpi4py -m benchmarks.pipeline")
    result = dict(machine=f"{info['cpu']}, {info['usable_cores']} cores, {comm.size} ranks", machine_info=info,
                  dataset=dataset, flags=common, throughput=rounds, goals=goals(rounds), bubble=bubble,
                  memory=memory, gantt=charts, emulate_seconds=[EMULATE, 2 * EMULATE])
    measure.save_json(result, args.out / "pipeline.json")
    plot(result, args.out)
    for name, entry in result["goals"].items():
        say(f"  {name}: median {entry['median']:.3f} (rounds {', '.join(f'{v:.3f}' for v in entry['per_round'])})")
    say(f"wrote {args.out / 'pipeline.json'}, pipeline.png and pipeline_gantt.png")


if __name__ == "__main__":
    main()
