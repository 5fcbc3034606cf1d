"""What every benchmark needs besides the thing it measures: timing, the machine, the files.

    timing    time_in_turns(steps, repeats, warmup, block) -> {name: [seconds]}
              median_seconds(fn, repeats, warmup=1)        one function, median of its calls
              summarize(seconds) -> {median_ms, p10_ms, p90_ms, steps}; ratios(results, pairs)
    machine   usable_cores(), machine_info(command) -> {cpu, cores, BLAS and its threads,
              library versions, load average, date, the command line}
    data      full_scale(quick): whether claims at full scale can be measured here
    files     save_json(report, path); bar_panels(panels, title, path): one bar chart per
              section, median with p10-p90 whiskers; print_table(title, results, ratio)

The spread is reported as the 10th and 90th percentiles, not a standard deviation: step
times on a shared machine have a long right tail (another job takes the core), and a mean
or a standard deviation would be dominated by it. The load average is recorded before and
after: above the number of cores, other work shares them and the numbers are less trustworthy.
"""
import datetime
import importlib.metadata
import json
import os
import platform
import sys
import time

import numpy

from engine.data.mnist import FASHION_MNIST_DIR


# ---- timing ----

def time_in_turns(steps, repeats, warmup, block):
    """{name: per-step seconds}: each step function timed ``repeats`` times, in turns of
    ``block`` timed steps, each turn after ``warmup`` untimed ones.

    Turns, so that a noisy neighbour slows every implementation alike; untimed steps at every
    turn, not only the first, because the library that ran before (OpenBLAS, or PyTorch's
    OpenMP pool) leaves threads spinning for a few milliseconds, and on 2 cores the first
    steps after a switch ran 2-50x slower.
    """
    times = {name: [] for name in steps}
    while any(len(t) < repeats for t in times.values()):
        for name, step in steps.items():
            if len(times[name]) >= repeats:
                continue
            for _ in range(warmup):
                step()
            for _ in range(min(block, repeats - len(times[name]))):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return times


def median_seconds(fn, repeats, warmup=1):
    """The median of ``repeats`` timed calls of ``fn()``, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(numpy.median(times))


def summarize(seconds):
    """{median_ms, p10_ms, p90_ms, steps} of a list of durations in seconds."""
    ms = numpy.asarray(seconds) * 1e3
    return {"median_ms": float(numpy.median(ms)), "p10_ms": float(numpy.percentile(ms, 10)),
            "p90_ms": float(numpy.percentile(ms, 90)), "steps": len(ms)}


def ratios(results, pairs):
    """{"a/b": median of a / median of b} for each pair present in ``results``."""
    med = {name: r["median_ms"] for name, r in results.items()}
    return {f"{a}/{b}": med[a] / med[b] for a, b in pairs if a in med and b in med}


# ---- the data ----

def full_scale(quick):
    """True when a benchmark runs at full scale: not --quick, and Fashion-MNIST (60,000
    images) installed where the engine reads it (Debian's dataset-fashion-mnist); otherwise
    it runs on the bundled MNIST subset."""
    return not quick and os.path.isdir(FASHION_MNIST_DIR)


# ---- the machine ----

def usable_cores():
    """Cores this process may run on (its affinity mask), not the machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def version(package):
    """The installed version of ``package`` without importing it, or None."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(command):
    """What a reader needs to judge the numbers. ``command``: how the benchmark is run
    (``python -m benchmarks.engine``); the arguments of this process are appended."""
    from engine import threads
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "usable_cores": usable_cores(),
            "python": platform.python_version(), "numpy": numpy.__version__, "numba": version("numba"),
            "blas": threads.blas_library(), "blas_threads": threads.blas_threads(),
            "load_average_before": list(os.getloadavg()),
            "command": " ".join([command] + sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


# ---- files ----

def save_json(report, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def print_table(title, results, ratio):
    print(f"\n{title}")
    print(f"{'implementation':<16}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'runs':>7}")
    for name, r in results.items():
        print(f"{name:<16}{r['median_ms']:>11.3f}{r['p10_ms']:>9.3f}{r['p90_ms']:>9.3f}{r['steps']:>7}")
    for name, value in ratio.items():
        print(f"{name:<16}{value:>11.2f}x")


def bar_panels(panels, title, path, labels=None, colors=None):
    """One bar panel per (title, unit, results, ratio): the median with p10-p90 whiskers,
    the ratios written on top. ``unit`` "ms" or "s" (results are in ms either way)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels, colors = labels or {}, colors or {}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (panel_title, unit, results, ratio) in zip(axes[0], panels):
        names = list(results)
        med = [results[n]["median_ms"] for n in names]
        err = [[m - results[n]["p10_ms"] for n, m in zip(names, med)],
               [results[n]["p90_ms"] - m for n, m in zip(names, med)]]
        scale = 1e-3 if unit == "s" else 1
        bars = ax.bar(range(len(names)), [m * scale for m in med], yerr=numpy.asarray(err) * scale,
                      capsize=6, color=[colors.get(n, "#999999") for n in names])
        for bar, m in zip(bars, med):
            ax.text(bar.get_x() + bar.get_width() / 2, m * scale / 2, f"{m * scale:.3g} {unit}",
                    ha="center", color="white", fontsize=10, fontweight="bold")
        ax.set_xticks(range(len(names)), [labels.get(n, n) for n in names], fontsize=9)
        ax.set_title(panel_title, fontsize=10)
        ax.set_ylabel(f"{unit} (median; whiskers p10-p90)")
        ax.set_ylim(0, max(results[n]["p90_ms"] for n in names) * scale * 1.35)
        ax.text(0.5, 0.97, "\n".join(f"{k} = {v:.2f}x" for k, v in ratio.items()), transform=ax.transAxes,
                ha="center", va="top", fontsize=9,
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="#cccccc"))
    save_figure(fig, path, title, dpi=110, fontsize=10)


def save_figure(fig, path, title=None, dpi=100, fontsize=None):
    """Every benchmark's last step: the title (the machine), a tight layout, the PNG, closed."""
    import matplotlib.pyplot as plt
    if title is not None:
        fig.suptitle(title, fontsize=fontsize)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
