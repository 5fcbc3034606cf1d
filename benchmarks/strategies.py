"""Every strategy on the same model, data, seed and epoch budget; and how data parallelism scales.

    mpirun -n 4 python -m mpi4py -m benchmarks.strategies            # ~20 s: benchmarks/results/strategies*
    mpirun -n 4 python -m mpi4py -m benchmarks.strategies --quick    # smoke run (the test), seconds

(Run it as a module: ``benchmarks/strategies.py`` run by path would shadow the ``strategies``
package.) Writes <out>/strategies.json and two plots (default out: benchmarks/results):

strategies.png - each entry of RUNS (the runner's own flags, one line per strategy; a later
  strategy adds one line) trained by ``strategies.train.run`` on the bundled MNIST subset:
  test accuracy against training wall time, epochs and bytes sent per rank; the loss curves
  (single and dp coincide: MATH F10); throughput; bytes per rank per step beside the formula.
  "single" runs on rank 0 alone while the others wait.

strategies_scaling.png - dp (ring) on full Fashion-MNIST at 1, 2 and 4 ranks, at two global
  batch sizes: samples/s and efficiency = (samples/s at p) / (p * samples/s of the single-process
  run), each the best of epochs 2-5 (other work on a shared machine slows some epochs down, never
  speeds one up; every epoch's number is in the JSON), beside the alpha-beta prediction for 1 to
  64 ranks:

      T_step(p) = T_compute(B / p) + T_ring(p, n)      T_ring = 2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma

  with T_compute(b) timed on one rank at each local batch b, and (alpha, beta, gamma) measured
  here (collectives/costmodel.py) or assumed for a 10 Gb/s Ethernet cluster. The machine has 2
  cores: from 3 ranks on, ranks share cores, so 2 ranks is the physical ceiling (said on the plot).
  Beside dp it runs p independent single processes at batch B/p at once: what p ranks reach
  with no messages and no waiting for each other - the hardware's own ceiling.

Ranks not taking part in a measurement wait in ``idle_barrier``, which sleeps: MPI's own
Barrier busy-polls and would steal a core from the ranks being timed.
"""
import argparse
import os
import pathlib
import platform
import time

import numpy

import collectives
import engine.functional as F
from collectives import costmodel
from collectives.tags import Tag
from engine import Tensor, manual_seed, models, optim
from engine.data.mnist import FASHION_MNIST_DIR
from engine.process import configure_process
from strategies import STRATEGIES, loop, train
from strategies.base import Single

from benchmarks import measure
from benchmarks.mpi_runs import cpu_busy, epoch_throughputs, on_first

ROOT = pathlib.Path(__file__).resolve().parents[1]

COMMON = "--model mlp --dataset mnist --batch-size 64 --lr 0.1 --seed 0 --quiet"
RUNS = {                                                  # label: the runner's flags
    "single": "--strategy single",
    "dp (ring)": "--strategy dp --algorithm ring",
    "local-sgd (H=8)": "--strategy local-sgd --period 8",
    "gossip (ring)": "--strategy gossip --topology ring",
}
SCALING = "--strategy dp --algorithm ring --model mlp --dataset fashion-mnist --lr 0.1 --seed 0 --quiet"
OVERLAP_BUCKET_BYTES = 64 << 10   # the MLP's last layer in one bucket, its first layer in another
ETHERNET = costmodel.LinkModel(alpha=30e-6, beta=1 / 1.25e9, gamma=0.0)   # assumed: 10 Gb/s, MPI over TCP


def compute_seconds(dataset, batch, steps):
    """Mean seconds of one single-process training step at local batch ``batch`` (no communication)."""
    X, y = dataset[0], dataset[1]
    manual_seed(0)
    model = models.build("mlp")
    strategy, opt = Single(model, None), optim.SGD(model.parameters(), lr=0.01)
    rows = numpy.random.default_rng(0).integers(0, len(X), (steps + 3, batch))
    for i, r in enumerate(rows):
        if i == 3:                                                     # 3 warm-up steps
            start = time.perf_counter()
        strategy.train_step(opt, F.cross_entropy, Tensor(X[r]), Tensor(y[r]))
    return (time.perf_counter() - start) / steps


def overlap_probe(comm, n_bytes, repeats=30):
    """On 2 ranks: does a non-blocking exchange of the gradient move while the rank computes?

    What an overlapping DataParallel would do (start a bucket's all-reduce during backward) at its
    simplest: swap n bytes with the other rank (isend/irecv) while running
    matrix products as long as a backward pass, then wait. Best-of-30 seconds of: compute alone,
    exchange alone (blocking sendrecv), both one after the other, and both overlapped."""
    peer, tag = 1 - comm.rank, Tag.GRADIENT
    grad = numpy.ones(n_bytes // 4, numpy.float32)                   # (n/4,) the gradient
    incoming = numpy.empty_like(grad)
    A = numpy.random.default_rng(0).random((256, 784), numpy.float32)
    W = numpy.random.default_rng(1).random((784, 128), numpy.float32)

    def compute():                                                    # about one backward at batch 256
        for _ in range(6):
            A @ W

    def exchange():
        comm.sendrecv(grad, peer, incoming, peer, tag)

    def overlapped():
        requests = [comm.irecv(incoming, peer, tag), comm.isend(grad, peer, tag)]
        compute()
        comm.waitall(requests)

    times = {}
    for name, fn in (("compute", compute), ("exchange", exchange),
                     ("serial", lambda: (compute(), exchange())), ("overlapped", overlapped)):
        samples = []
        for _ in range(repeats + 3):
            comm.barrier()
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        times[name] = float(min(samples[3:]))                        # best: bursts of other work only add
    times["saved"] = times["serial"] - times["overlapped"]
    times["ideal_saving"] = min(times["compute"], times["exchange"])
    return times


def compare(comm, epochs, say):
    """RUNS on the bundled MNIST subset; {label: record} on rank 0."""
    data, records = None, {}
    for label, flags in RUNS.items():
        args = train.parse_args(f"{COMMON} {flags} --epochs {epochs}".split())
        data = data or loop.load_data(args)
        ranks = 1 if STRATEGIES[args.strategy].max_world_size == 1 else comm.size
        records[label] = on_first(comm, ranks, lambda sub: train.run(args, sub, data))
        if comm.rank == 0:
            r = records[label]
            say(f"  {label:<18} {r['world_size']} rank(s)  test acc {r['final_test_accuracy']:.4f}  "
                f"{r['train_seconds']:6.2f} s  {r['samples_per_second']:8,.0f} samples/s  "
                f"{r['bytes_sent_per_rank_per_step']:>9,.0f} B/rank/step (formula "
                f"{r['formula_bytes_per_rank_per_step'] or 0:,.0f})", flush=True)
    return records


def scaling(comm, batches, epochs, dataset_name, say):
    """dp at 1, 2, 4 ranks (1 rank: single), link and compute times, cost-model predictions."""
    args0 = train.parse_args(f"{SCALING} --dataset {dataset_name} --epochs {epochs} --batch-size 64".split())
    data = loop.load_data(args0)
    measured, ceilings, overlapped = [], [], []
    for B in batches:
        for p in [q for q in (1, 2, 4) if q <= comm.size]:
            flags = f"{SCALING} --dataset {dataset_name} --epochs {epochs} --batch-size {B}"
            args = train.parse_args((flags + (" --strategy single" if p == 1 else "")).split())
            r = on_first(comm, p, lambda sub: train.run(args, sub, data))
            if comm.rank == 0:
                per_epoch = epoch_throughputs(r["epochs"], B)
                measured.append(dict(batch=B, ranks=p, samples_per_second=max(per_epoch),
                                     per_epoch_samples_per_second=per_epoch,
                                     comm_share=r["comm_share"], test_accuracy=r["final_test_accuracy"],
                                     loadavg=r["loadavg"]))
                base = next(m for m in measured if m["batch"] == B and m["ranks"] == 1)
                measured[-1]["efficiency"] = measured[-1]["samples_per_second"] / (p * base["samples_per_second"])
                say(f"  B={B:<5} {p} rank(s): {measured[-1]['samples_per_second']:9,.0f} samples/s, "
                    f"efficiency {measured[-1]['efficiency']:.1%}, communication {r['comm_share']:.1%} of the "
                    f"step, load average {r['loadavg'][0]:.1f}", flush=True)
            if p == 2:                  # the same with each bucket's all-reduce started during backward
                over = train.parse_args(f"{flags} --overlap --bucket-bytes {OVERLAP_BUCKET_BYTES}".split())
                r = on_first(comm, p, lambda sub: train.run(over, sub, data))
                if comm.rank == 0:
                    rate = max(epoch_throughputs(r["epochs"], B))
                    overlapped.append(dict(batch=B, ranks=p, samples_per_second=rate, comm_share=r["comm_share"],
                                           efficiency=rate / (p * base["samples_per_second"])))
                    say(f"           dp --overlap (buckets of {OVERLAP_BUCKET_BYTES:,} B): {rate:9,.0f} samples/s, "
                        f"efficiency {overlapped[-1]['efficiency']:.1%}, waiting for the all-reduce "
                        f"{r['comm_share']:.1%} of the step", flush=True)
            if p > 1:                   # the ceiling: p independent processes at batch B/p, no messages
                solo = train.parse_args(f"{flags} --strategy single --batch-size {B // p}".split())
                r = on_first(comm, p, lambda sub: train.run(solo, sub.split(sub.rank), data))
                if comm.rank == 0:
                    rate = p * max(epoch_throughputs(r["epochs"], B // p))
                    ceilings.append(dict(batch=B, ranks=p, samples_per_second=rate,
                                         efficiency=rate / (p * base["samples_per_second"])))
                    say(f"           ceiling: {p} independent processes at batch {B // p}: {rate:9,.0f} samples/s, "
                        f"efficiency {ceilings[-1]['efficiency']:.1%}", flush=True)

    link = on_first(comm, 2, lambda sub: costmodel.measure_link(sub, repeats=20)) if comm.size >= 2 else None
    n_bytes = sum(p.data.nbytes for p in models.build("mlp").parameters())
    overlap = on_first(comm, 2, lambda sub: overlap_probe(sub, n_bytes)) if comm.size >= 2 else None
    if overlap:
        say(f"  overlap probe, 2 ranks, {n_bytes:,} B: compute {overlap['compute'] * 1e3:.3f} ms, exchange "
            f"{overlap['exchange'] * 1e3:.3f} ms, serial {overlap['serial'] * 1e3:.3f} ms, overlapped "
            f"{overlap['overlapped'] * 1e3:.3f} ms: saved {overlap['saved'] * 1e3:.3f} ms of at most "
            f"{overlap['ideal_saving'] * 1e3:.3f} ms", flush=True)
    ranks = [1, 2, 4, 8, 16, 32, 64]
    compute = on_first(comm, 1, lambda sub: {b: compute_seconds(data, b, 30) for b in
                                             sorted({max(1, B // p) for B in batches for p in ranks})})
    if comm.rank != 0:
        return None
    links = {"this machine's link (measured, 2 ranks)": link, "10 Gb/s Ethernet (assumed)": ETHERNET}
    predicted = {name: {B: [B / (compute[max(1, B // p)] + costmodel.predict("ring", p, n_bytes, lk))
                            for p in ranks] for B in batches} for name, lk in links.items() if lk}
    return dict(dataset=dataset_name, model="mlp", gradient_bytes=n_bytes, batches=batches, measured=measured,
                no_communication_ceiling=ceilings, overlapped=overlapped, overlap_probe=overlap,
                link=None if link is None else vars(link), compute_seconds={str(b): t for b, t in compute.items()},
                predicted_ranks=ranks,
                predicted={name: {str(B): [dict(samples_per_second=s, efficiency=s / (p * v[0]))
                                           for p, s in zip(ranks, v)] for B, v in per.items()}
                           for name, per in predicted.items()})


def plot_runs(records, path, note):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    (time_ax, epoch_ax, bytes_ax), (loss_ax, speed_ax, traffic_ax) = axes
    for i, (label, r) in enumerate(records.items()):
        e, style = r["epochs"], dict(marker="o", ms=3, label=label, color=f"C{i}")
        acc = [x["test_accuracy"] for x in e]
        time_ax.plot([x["train_seconds"] for x in e], acc, **style)
        epoch_ax.plot([x["epoch"] for x in e], acc, **style)
        loss_ax.plot([x["epoch"] for x in e], [x["loss"] for x in e], **style,
                     lw=5 if label == "single" else 1.5, alpha=0.35 if label == "single" else 1)
        if r["bytes_sent_per_rank"] > 0:
            bytes_ax.semilogx([x["bytes_sent_per_rank"] / 1e6 for x in e], acc, **style)
    time_ax.set(xlabel="training wall time (s)", ylabel="test accuracy", title="accuracy vs wall time")
    epoch_ax.set(xlabel="epoch", ylabel="test accuracy", title="accuracy vs epochs")
    bytes_ax.set(xlabel="MB sent per rank (log)", ylabel="test accuracy", title="accuracy vs bytes sent (single: 0)")
    loss_ax.set(xlabel="epoch", ylabel="mean training loss", title="loss: single and dp coincide (MATH F10)")
    labels = list(records)
    speed_ax.bar(labels, [records[k]["samples_per_second"] for k in labels],
                 color=[f"C{i}" for i in range(len(labels))])
    speed_ax.set(ylabel="samples / s", title="throughput (training only)")
    x = numpy.arange(len(labels))
    traffic_ax.bar(x - 0.2, [records[k]["bytes_sent_per_rank_per_step"] / 1e3 for k in labels], 0.4,
                   label="measured (counters)")
    traffic_ax.bar(x + 0.2, [(records[k]["formula_bytes_per_rank_per_step"] or 0) / 1e3 for k in labels], 0.4,
                   label="formula (strategies/traffic.py)")
    traffic_ax.set(xticks=x, xticklabels=labels, ylabel="kB per rank per step", title="bytes per rank per step")
    for ax in (speed_ax, traffic_ax):
        ax.tick_params(axis="x", labelrotation=15)
    traffic_ax.legend(fontsize=8)
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    time_ax.legend(fontsize=8)
    measure.save_figure(fig, path, note)


def plot_scaling(result, path, note):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (speed_ax, eff_ax) = plt.subplots(1, 2, figsize=(16, 5.2))
    ranks = result["predicted_ranks"]
    for i, B in enumerate(result["batches"]):
        color = f"C{i}"
        points = [m for m in result["measured"] if m["batch"] == B]
        speed_ax.plot([m["ranks"] for m in points], [m["samples_per_second"] for m in points], "o-",
                      color=color, lw=2, ms=7, label=f"measured, global batch {B}")
        eff_ax.plot([m["ranks"] for m in points], [m["efficiency"] for m in points], "o-", color=color, lw=2, ms=7,
                    label=f"measured, global batch {B}")
        over = [m for m in result.get("overlapped", []) if m["batch"] == B]
        eff_ax.plot([m["ranks"] for m in over], [m["efficiency"] for m in over], "s", color=color, ms=8,
                    mfc="none", label=f"measured, dp --overlap, B={B}")
        ceiling = [m for m in result["no_communication_ceiling"] if m["batch"] == B]
        eff_ax.plot([1] + [m["ranks"] for m in ceiling], [1] + [m["efficiency"] for m in ceiling], "x-.",
                    color=color, lw=1, ms=7, label=f"p independent processes, no messages, B={B}")
        for style, (name, per) in zip(("--", ":"), result["predicted"].items()):
            values = per[str(B)]
            speed_ax.plot(ranks, [v["samples_per_second"] for v in values], style, color=color,
                          label=f"model, {name}, B={B}")
            eff_ax.plot(ranks, [v["efficiency"] for v in values], style, color=color, label=f"model, {name}, B={B}")
    for ax in (speed_ax, eff_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(p) for p in ranks])
        ax.axvline(2, color="grey", lw=1)
        ax.axvspan(2, max(ranks), color="grey", alpha=0.08)
        ax.annotate("2 cores: 2 ranks is the physical ceiling;\nbeyond it ranks share cores (measured points)",
                    (2.1, 0.97), xycoords=("data", "axes fraction"), va="top", fontsize=8, color="dimgrey")
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("ranks p")
    eff_ax.axhline(0.85, color="red", lw=0.8, ls="-.")
    eff_ax.annotate("goal 85 % at 2 ranks", (1, 0.86), fontsize=8, color="red")
    speed_ax.set(ylabel="samples / s", title=f"dp (ring) throughput, {result['model']} on {result['dataset']}")
    eff_ax.set(ylabel="efficiency = S(p) / (p S(1))", ylim=(0, 1.1), title="scaling efficiency")
    speed_ax.set_yscale("log")
    eff_ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    measure.save_figure(fig, path, note)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, scaling on the bundled subset")
    parser.add_argument("--epochs", type=int, default=None, help="default 10 (--quick: 2)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    configure_process()
    comm = collectives.world()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    cores = measure.usable_cores()
    busy_before = on_first(comm, 1, lambda sub: cpu_busy())
    say(f"{comm.size} MPI ranks on {cores} cores; before starting, other work keeps "
        f"{busy_before if busy_before is not None else 0:.0%} of the CPU busy")

    epochs = args.epochs or (2 if args.quick else 10)
    say(f"\n1. every strategy, mlp on the bundled MNIST subset, {epochs} epochs, global batch 64")
    records = compare(comm, epochs, say)
    full_scale = measure.full_scale(args.quick)
    if not args.quick and not full_scale:
        say(f"\n(Fashion-MNIST is not installed in {FASHION_MNIST_DIR}: the scaling part runs on the "
            "bundled subset instead; `sudo apt-get install dataset-fashion-mnist` for the full-scale one)")
    say("\n2. scaling of dp (ring)" + (" on full Fashion-MNIST" if full_scale else " on the bundled subset"))
    scale = scaling(comm, [128, 512] if full_scale else [128], 5 if full_scale else 1,
                    "fashion-mnist" if full_scale else "mnist", say)
    if comm.rank == 0:
        scale["dataset"] = "full Fashion-MNIST (60,000)" if full_scale else "the bundled MNIST subset"
    busy_after = on_first(comm, 1, lambda sub: cpu_busy())
    if comm.rank != 0:
        return
    busy = max(busy_before, busy_after) > 0.1
    machine = (f"{platform.machine()}, {cores} cores, {comm.size} ranks"
               + (" (oversubscribed)" if comm.size > cores else "")
               + f"; other work: {busy_before:.0%} / {busy_after:.0%} CPU before / after"
               + (" (timings pessimistic)" if busy else ""))
    result = dict(machine=machine, machine_info=measure.machine_info("mpirun -n K python -m mpi4py -m benchmarks.strategies"),
                  ranks=comm.size, cores=cores, other_cpu_busy_before=busy_before,
                  other_cpu_busy_after=busy_after, loadavg=os.getloadavg(), busy=busy, quick=args.quick,
                  common_flags=COMMON,
                  runs={label: dict(flags=RUNS[label], **r) for label, r in records.items()}, scaling=scale)
    args.out.mkdir(parents=True, exist_ok=True)
    measure.save_json(result, args.out / "strategies.json")
    plot_runs(records, args.out / "strategies.png", f"Strategies, MLP on the bundled MNIST subset: {machine}")
    plot_scaling(scale, args.out / "strategies_scaling.png", f"Data-parallel scaling: {machine}")
    say(f"\nwrote {args.out / 'strategies.json'}, strategies.png and strategies_scaling.png")


if __name__ == "__main__":
    main()
