"""How much does the engine cost over NumPy? One training step, three ways.

    python benchmarks/engine.py                      # the full run (about 20 s)
    python benchmarks/engine.py --quick --out /tmp   # a smoke test (seconds)

One SGD step of an MLP 784-512-256-10 (ReLU), float32, batch 128, cross-entropy loss:
forward, backward and update, written

1. with the engine: ``nn.Sequential`` of ``nn.Linear``/``nn.ReLU``, ``F.cross_entropy``,
   ``loss.backward()``, ``optim.SGD``;
2. by hand in NumPy: the same forward, the backward derived on paper, the update in place;
3. with PyTorch on the CPU (if it imports), with as many threads as NumPy's BLAS uses.

Each step also returns the loss as a float and the gradients, as a training loop would.
The hand-written backward, for logits Z3 = H2 W3^T + b3 and p = softmax(Z3) (MATH F5, F6):

    dZ3 = (p - onehot(y)) / N                    # (N, 10)
    dW3 = dZ3^T H2,  db3 = sum_n dZ3,  dH2 = dZ3 W3
    dZ2 = dH2 * [Z2 > 0]                         # ReLU passes the gradient where it was open
    ... and so on down to dW1 = dZ1^T X (no dX: the input needs no gradient).

Before timing, the engine's gradients are checked against the hand-written ones (and
PyTorch's) on the same weights and batch, so the three steps compute the same thing.
The matmuls are the same in all three (about 0.3 GFLOP a step at batch 128), so the
ratio engine/numpy measures the engine's Python and memory overhead.

Timings: ``--repeats`` timed steps per implementation, taken in turns of ``--block`` steps
(each turn after ``--warmup`` untimed ones) so that a noisy neighbour slows all three
alike; we report the median and the 10th/90th percentiles of the single-step times.
Results go to ``<out>/engine.json`` and ``<out>/engine.png``.
"""
import os
import sys

# This file is itself called engine.py, and Python puts its folder first on sys.path:
# without this line ``import engine`` would import this script instead of the package.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import engine  # noqa: E402  (before NumPy: it sets thread counts before the BLAS loads)
import engine.functional as F  # noqa: E402
from engine import nn, optim  # noqa: E402

import argparse  # noqa: E402
import ctypes  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy  # noqa: E402

SIZES = (784, 512, 256, 10)
LR = 0.01
# float32 gradients of one step summed in different orders (BLAS blocking, threads) differ
# by about eps * sqrt(terms) of the terms' size (eps = 6e-8, terms <= 784): we ask for 1e-4
# relative, and 1e-4 of the gradient's largest entry absolute (entries near zero come from
# cancellation). Observed at batch 128: at most 1e-8 absolute, against entries up to 5e-2.
GRAD_RTOL = 1e-4
GRAD_ATOL_OF_MAX = 1e-4


# ---- the three implementations: each gives (step, grads) over the same weights ----

def init_weights(seed):
    """[W1, b1, W2, b2, W3, b3], W (out, in) and b U(-1/sqrt(in), 1/sqrt(in)) as in torch."""
    rng = numpy.random.default_rng(seed)
    weights = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        bound = 1 / numpy.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(numpy.float32))
        weights.append(rng.uniform(-bound, bound, fan_out).astype(numpy.float32))
    return weights


def engine_mlp(weights, x, y):
    layers = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])               # no ReLU after the logits
    for p, w in zip(model.parameters(), weights):
        p.data[...] = w
    opt = optim.SGD(model.parameters(), lr=LR)
    x = engine.Tensor(x)

    def grads():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.item(), [p.grad for p in model.parameters()]

    def step():
        grads()
        opt.step()

    return step, grads


def numpy_mlp(weights, x, y):
    W1, b1, W2, b2, W3, b3 = params = [w.copy() for w in weights]
    n = x.shape[0]
    rows = numpy.arange(n)

    def grads():
        # forward
        z1 = x @ W1.T                                   # (N, 512)
        z1 += b1
        h1 = numpy.maximum(z1, 0, out=z1)
        z2 = h1 @ W2.T                                  # (N, 256)
        z2 += b2
        h2 = numpy.maximum(z2, 0, out=z2)
        z3 = h2 @ W3.T                                  # (N, 10)
        z3 += b3
        z3 -= z3.max(axis=1, keepdims=True)             # stable softmax: exponents <= 0
        p = numpy.exp(z3)
        s = p.sum(axis=1, keepdims=True)
        loss = float(numpy.log(s[:, 0]).sum() - z3[rows, y].sum()) / n
        # backward
        p /= s
        p[rows, y] -= 1
        p /= n                                          # dZ3 (N, 10)
        dW3, db3 = p.T @ h2, p.sum(axis=0)
        dh2 = p @ W3                                    # (N, 256)
        dh2 *= h2 > 0                                   # dZ2 (a mask product: 15x faster
                                                        # than dh2[h2 <= 0] = 0)
        dW2, db2 = dh2.T @ h1, dh2.sum(axis=0)
        dh1 = dh2 @ W2                                  # (N, 512)
        dh1 *= h1 > 0                                   # dZ1
        dW1, db1 = dh1.T @ x, dh1.sum(axis=0)
        return loss, [dW1, db1, dW2, db2, dW3, db3]

    def step():                                         # theta <- theta - lr * grad
        for w, g in zip(params, grads()[1]):
            g *= LR          # the gradients are ours to scale: no temporary
            w -= g

    return step, grads


def torch_mlp(weights, x, y):
    import torch
    layers = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(torch.from_numpy(w))
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def grads():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.item(), [p.grad.numpy() for p in model.parameters()]

    def step():
        grads()
        opt.step()

    return step, grads


def check_same_gradients(reference, other, name):
    """Raise AssertionError unless ``other``'s loss and gradients match ``reference``'s."""
    (ref_loss, ref_grads), (loss, grads) = reference(), other()
    numpy.testing.assert_allclose(loss, ref_loss, rtol=GRAD_RTOL, err_msg=f"{name}: loss")
    for i, (g, ref) in enumerate(zip(grads, ref_grads)):
        atol = GRAD_ATOL_OF_MAX * float(numpy.abs(ref).max())
        numpy.testing.assert_allclose(g, ref, rtol=GRAD_RTOL, atol=atol,
                                      err_msg=f"{name}: gradient of parameter {i}")


# ---- timing ----

def time_in_turns(steps, repeats, warmup, block):
    """{name: per-step seconds}: each step function timed ``repeats`` times, in turns of
    ``block`` timed steps, each turn after ``warmup`` untimed ones.

    The untimed steps matter at every turn, not only the first: the library that ran
    before (OpenBLAS, or PyTorch's OpenMP pool) leaves threads spinning for a few
    milliseconds, and on 2 cores the first steps after a switch ran 2-50x slower.
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


def summarize(seconds):
    ms = numpy.asarray(seconds) * 1e3
    return {"median_ms": float(numpy.median(ms)), "p10_ms": float(numpy.percentile(ms, 10)),
            "p90_ms": float(numpy.percentile(ms, 90)), "steps": len(ms)}


def profile(step, repeats, top):
    """cProfile the engine step: own time per function (the profiler itself adds ~1 us a call)."""
    import cProfile
    import pstats
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        step()
    profiler.disable()
    print(f"\nengine step, {repeats} steps under cProfile (tottime = own time, summed):")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


# ---- the machine ----

def blas_threads():
    """(threads NumPy's BLAS uses, how we found out). threadpoolctl if it is installed;
    otherwise we ask the OpenBLAS library NumPy loaded, as threadpoolctl itself does."""
    try:
        from threadpoolctl import threadpool_info
        blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
        if blas:
            return blas[0]["num_threads"], f"threadpoolctl ({blas[0]['internal_api']})"
    except ImportError:
        pass
    try:
        with open("/proc/self/maps") as maps:
            libs = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    except OSError:
        libs = []
    for path in libs:
        lib = ctypes.CDLL(path)
        for symbol in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                       "openblas_get_num_threads"):
            if hasattr(lib, symbol):
                return int(getattr(lib, symbol)()), f"{symbol}() in {os.path.basename(path)}"
    return None, "unknown (no threadpoolctl, no OpenBLAS found)"


def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info(threads, threads_how, torch_version, torch_threads):
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas['version']}"
    except Exception:  # show_config(mode=) is NumPy >= 1.25; the layout is not an API
        blas = "unknown"
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable_cores(),
            "python": platform.python_version(), "numpy": numpy.__version__, "blas": blas,
            "torch": torch_version, "blas_threads": threads, "blas_threads_from": threads_how,
            "torch_threads": torch_threads, "load_average": list(os.getloadavg()),
            "command": " ".join(["python"] + sys.argv),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


# ---- report ----

def ratios(results):
    med = {name: r["median_ms"] for name, r in results.items()}
    pairs = [("engine", "numpy"), ("engine", "torch"), ("numpy", "torch")]
    return {f"{a}/{b}": med[a] / med[b] for a, b in pairs if a in med and b in med}


def print_table(results, ratio, info):
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {info['batch_size']}, float32 | {info['cpu']}, "
          f"{info['cores']} cores, BLAS threads {info['blas_threads']} ({info['blas_threads_from']})")
    print(f"{'implementation':<16}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'steps':>7}")
    for name, r in results.items():
        print(f"{name:<16}{r['median_ms']:>11.3f}{r['p10_ms']:>9.3f}{r['p90_ms']:>9.3f}{r['steps']:>7}")
    for name, value in ratio.items():
        print(f"{name:<16}{value:>11.2f}x")


LABELS = {"engine": "mpigrad engine", "numpy": "NumPy by hand", "torch": "PyTorch (CPU)"}


def plot(results, ratio, info, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    med = [results[n]["median_ms"] for n in names]
    err = [[m - results[n]["p10_ms"] for n, m in zip(names, med)],
           [results[n]["p90_ms"] - m for n, m in zip(names, med)]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bars = ax.bar(names, med, yerr=err, capsize=8, color=["#d9822b", "#4c78a8", "#7f7f7f"][:len(names)])
    for bar, m in zip(bars, med):
        ax.text(bar.get_x() + bar.get_width() / 2, m / 2, f"{m:.2f} ms", ha="center",
                color="white", fontsize=12, fontweight="bold")
    ax.set_ylabel("ms per training step (median; bars: p10-p90)")
    ax.set_title(f"One SGD step, MLP {'-'.join(map(str, SIZES))}, batch {info['batch_size']}, float32\n"
                 f"{info['cpu']}, BLAS threads {info['blas_threads']}", fontsize=10)
    ax.set_xticks(range(len(names)), [LABELS[n] for n in names])
    ax.text(0.5, 0.96, "    ".join(f"{k} = {v:.2f}x" for k, v in ratio.items()),
            transform=ax.transAxes, ha="center", va="top", fontsize=11,
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="#cccccc"))
    ax.set_ylim(0, max(results[n]["p90_ms"] for n in names) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1000, help="timed steps per implementation")
    parser.add_argument("--block", type=int, default=100, help="timed steps in one turn")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before each turn")
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N functions where the engine step spends most time")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.block = 5, 2, 5

    threads, threads_how = blas_threads()  # before torch loads its own thread pools
    torch_version = torch_threads = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(threads or usable_cores())
            torch_version, torch_threads = torch.__version__, torch.get_num_threads()
        except ImportError:
            pass

    rng = numpy.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch_size, SIZES[0])).astype(numpy.float32)  # (N, 784)
    y = rng.integers(0, SIZES[-1], args.batch_size)                             # (N,) int64
    weights = init_weights(args.seed)
    makers = {"engine": engine_mlp, "numpy": numpy_mlp}
    if torch_version:
        makers["torch"] = torch_mlp
    impls = {name: make(weights, x, y) for name, make in makers.items()}

    for name, (_, grads) in impls.items():
        if name != "numpy":
            check_same_gradients(impls["numpy"][1], grads, name)
    print(f"gradients agree with the hand-written NumPy step (rtol={GRAD_RTOL}, "
          f"atol={GRAD_ATOL_OF_MAX} * max|grad|): "
          + ", ".join(n for n in impls if n != "numpy"))

    times = time_in_turns({name: step for name, (step, _) in impls.items()},
                          args.repeats, args.warmup, args.block)
    results = {name: summarize(t) for name, t in times.items()}
    ratio = ratios(results)
    info = machine_info(threads, threads_how, torch_version, torch_threads)
    info.update(batch_size=args.batch_size, sizes=list(SIZES), dtype="float32", lr=LR,
                repeats=args.repeats, warmup=args.warmup, block=args.block, quick=args.quick,
                grad_check={"rtol": GRAD_RTOL, "atol_of_max": GRAD_ATOL_OF_MAX, "passed": True})
    print_table(results, ratio, info)
    if args.profile:
        profile(impls["engine"][0], args.repeats, args.profile)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine.json").write_text(json.dumps(
        {"benchmark": "mlp_train_step", "machine": info, "results": results, "ratios": ratio},
        indent=2) + "\n")
    plot(results, ratio, info, args.out / "engine.png")
    print(f"wrote {args.out / 'engine.json'} and {args.out / 'engine.png'}")


if __name__ == "__main__":
    main()
