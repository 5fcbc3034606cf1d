"""All-reduce time and bus bandwidth against message size, every algorithm and MPI's own.

    mpirun -n 4 python -m mpi4py -m benchmarks.collectives            # 1 KiB .. 64 MiB, ~1 min
    mpirun -n 2 python -m mpi4py -m benchmarks.collectives --quick    # smoke run, seconds

OSU-style: for each size and algorithm, warm-up calls, then repeats each started after a
barrier; a rank's time is the median of its repeats and the reported time the slowest rank's.
Bus bandwidth (NCCL's convention) makes algorithms comparable across p:

    busbw = (n / t) * 2 (p - 1) / p         (the bytes each rank must move, per second)

Beside the measurements it draws the alpha-beta prediction of each algorithm
(collectives/algorithms.py) with alpha measured with every rank busy, beta by ping-pong and
gamma by timing np.add. That measured link is set as ``comm.link`` first, so the "auto" row
is the algorithm the cost model picks for each size on this machine (printed and recorded).
Writes <out>/collectives.json and <out>/collectives.png (default out: benchmarks/results).
"""
import argparse
import os
import pathlib
import platform
import time

import numpy

import collectives
from collectives import algorithms, costmodel
from engine.process import configure_process

from benchmarks import measure

ROOT = pathlib.Path(__file__).resolve().parents[1]

MODELLED = [name for name, algorithm in collectives.ALGORITHMS.items()
            if algorithm.time_formula is not None]      # every one but "mpi"


def time_allreduce(comm, name, x, repeats, warmup=2):
    """This rank's median seconds for one all-reduce of x (no consistency check)."""
    times = []
    for repeat in range(warmup + repeats):
        comm.barrier()
        start = time.perf_counter()
        collectives.allreduce(comm, x, name, check=False)
        if repeat >= warmup:
            times.append(time.perf_counter() - start)
    return float(numpy.median(times))


def repeats_for(nbytes, quick):
    if quick:
        return 3
    return 40 if nbytes <= 64 << 10 else 15 if nbytes <= 4 << 20 else 7


def crossover(sizes, seconds):
    """Smallest size from which the ring stays faster than both tree and recursive doubling."""
    faster = [r < min(t, d) for r, t, d in zip(seconds["ring"], seconds["tree"],
                                               seconds["recursive-doubling"])]
    for i in range(len(sizes)):
        if all(faster[i:]):
            return sizes[i]
    return None


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = numpy.array(result["sizes"])
    p = result["ranks"]
    colors = dict(zip(list(result["seconds"]), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    for name, seconds in result["seconds"].items():
        t = numpy.array(seconds)
        style = dict(color=colors[name], marker="o", markersize=3.5,
                     linewidth=2.4 if name in ("ring", "mpi", "auto") else 1.4,
                     label="MPI.Allreduce (library)" if name == "mpi" else name)
        left.loglog(sizes, t * 1e3, **style)
        right.semilogx(sizes, sizes / t * 2 * (p - 1) / p / 1e9, **style)
        if name in result["model"]["predicted"]:
            left.loglog(sizes, numpy.array(result["model"]["predicted"][name]) * 1e3, "--",
                        color=colors[name], linewidth=1, alpha=0.7)
    link = result["model"]
    left.plot([], [], "k--", linewidth=1,
              label=f"alpha-beta model: alpha={link['alpha'] * 1e6:.0f} us (all ranks busy; "
                    f"ping-pong {link['ping_pong_alpha'] * 1e6:.0f} us), "
                    f"1/beta={1 / link['beta'] / 1e9:.1f} GB/s")
    if result["crossover_bytes"]:
        for axis in (left, right):
            axis.axvline(result["crossover_bytes"], color="grey", linestyle=":", linewidth=1)
        left.annotate("ring faster from here", (result["crossover_bytes"], left.get_ylim()[0]),
                      xytext=(5, 10), textcoords="offset points", fontsize=8, color="grey")
    left.set(xlabel="message size (bytes per rank)", ylabel="time per all-reduce (ms)",
             title="time (log-log; dashed: cost model)")
    right.set(xlabel="message size (bytes per rank)", ylabel="bus bandwidth (GB/s)",
              title="bus bandwidth = n/t * 2(p-1)/p")
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    measure.save_figure(fig, path, f"All-reduce on {p} MPI ranks, {result['machine']}", dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 small sizes, 3 repeats")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    configure_process()
    comm = collectives.world()
    info = measure.machine_info("mpirun -n K python -m mpi4py -m benchmarks.collectives")  # load before
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    sizes = [1 << k for k in (range(10, 17, 2) if args.quick else range(10, 27))]  # 1 KiB .. 64 MiB
    names = list(collectives.ALGORITHMS) + ["auto"]

    ping = costmodel.measure_link(comm, repeats=10 if args.quick else 50)
    loaded_alpha = costmodel.ring_step_latency(comm, repeats=10 if args.quick else 100)
    # The model lines use the alpha a collective actually sees (every rank busy at once).
    link = costmodel.LinkModel(loaded_alpha, ping.beta, ping.gamma)
    latency = algorithms.measure_latencies(comm, repeats=10 if args.quick else 50)
    # What algorithm="auto" chooses with: the measured fixed cost of each algorithm in place of
    # its alpha terms (costmodel.py), the same numbers on every rank.
    comm.link = costmodel.LinkModel(link.alpha, link.beta, link.gamma, tuple(latency.items()))
    say(f"ping-pong (2 ranks busy): alpha = {ping.alpha * 1e6:.1f} us, beta = "
        f"{ping.beta * 1e9:.3f} ns/B ({1 / ping.beta / 1e9:.2f} GB/s); gamma = "
        f"{ping.gamma * 1e9:.3f} ns/B (np.add)\nring step, all {comm.size} ranks busy: "
        f"alpha = {loaded_alpha * 1e6:.1f} us   (the model lines use this alpha)\n"
        "fixed cost of each algorithm (8 B, auto uses these): "
        + ", ".join(f"{name} {t * 1e6:.1f} us" for name, t in latency.items()))
    width = {name: max(11, len(name) + 2) for name in names}             # a column per algorithm
    say("\nmilliseconds per all-reduce (slowest rank's median):")
    say(f"{'bytes':>10}" + "".join(f"{name:>{width[name]}}" for name in names)
        + f"{'ring busbw':>13}{'mpi busbw':>12}{'ring/mpi':>10}{'auto chose':>20}{'auto/mpi':>10}")

    seconds = {name: [] for name in names}
    chosen = []
    for nbytes in sizes:
        chosen.append(algorithms.choose(comm.size, nbytes, comm.link))
        x = numpy.ones(nbytes // 8)                                     # float64
        mine = numpy.array([time_allreduce(comm, name, x, repeats_for(nbytes, args.quick))
                            for name in names])
        slowest = collectives.allreduce(comm, mine, "mpi", "max")       # slowest rank's median
        for name, t in zip(names, slowest):
            seconds[name].append(float(t))
        busbw = {name: nbytes / seconds[name][-1] * 2 * (comm.size - 1) / comm.size / 1e9
                 for name in ("ring", "mpi")}
        say(f"{nbytes:>10}"
            + "".join(f"{t * 1e3:>{width[name]}.3f}" for name, t in zip(names, slowest))
            + f"{busbw['ring']:>8.2f} GB/s{busbw['mpi']:>7.2f} GB/s"
            + f"{seconds['mpi'][-1] / seconds['ring'][-1]:>10.2f}{chosen[-1]:>20}"
            + f"{seconds['mpi'][-1] / seconds['auto'][-1]:>10.2f}", flush=True)

    p, cores = comm.size, measure.usable_cores()
    result = {
        "ranks": p,
        "machine": f"{platform.machine()}, {cores} cores"
                   + (" - oversubscribed: ranks share cores" if p > cores else ""),
        "machine_info": info,
        "load_average_after": list(os.getloadavg()),
        "sizes": sizes,
        "seconds": seconds,
        "busbw_GBps": {name: [n / t * 2 * (p - 1) / p / 1e9 for n, t in zip(sizes, ts)]
                       for name, ts in seconds.items()},
        "ring_over_mpi_throughput": [m / r for m, r in zip(seconds["mpi"], seconds["ring"])],
        "auto_choice": chosen,
        "auto_over_mpi_throughput": [m / a for m, a in zip(seconds["mpi"], seconds["auto"])],
        "crossover_bytes": crossover(sizes, seconds),
        "model": {"alpha": link.alpha, "beta": link.beta, "gamma": link.gamma,
                  "ping_pong_alpha": ping.alpha, "measured_latency": latency,
                  "predicted": {name: [costmodel.predict(name, p, n, link) for n in sizes]
                                for name in MODELLED}},
    }
    if comm.rank == 0:
        measure.save_json(result, args.out / "collectives.json")
        plot(result, args.out / "collectives.png")
        ratio = dict(zip(sizes, result["ring_over_mpi_throughput"]))
        say("\nring / MPI.Allreduce throughput: "
            + ", ".join(f"{n >> 20} MiB: {ratio[n]:.2f}" for n in sizes if n >= 16 << 20))
        auto = dict(zip(sizes, result["auto_over_mpi_throughput"]))
        say("auto / MPI.Allreduce throughput: "
            + ", ".join(f"{_size(n)} ({choice}): {auto[n]:.2f}"
                        for n, choice in zip(sizes, chosen)))
        say(f"crossover (ring fastest of ring/tree/recursive doubling from): "
            f"{result['crossover_bytes']} bytes")
        say(f"wrote {args.out / 'collectives.json'} and {args.out / 'collectives.png'}")


def _size(nbytes):
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


if __name__ == "__main__":
    main()
