"""How fast is the engine? Training steps and a full epoch, against NumPy and PyTorch.

    python -m benchmarks.engine                      # the full run (about a minute)
    python -m benchmarks.engine --quick --out /tmp   # a smoke test (seconds)
    python -m benchmarks.engine --only lenet5        # one section: mlp, lenet5, epoch, gpu

(Run it as a module from the repository root: ``benchmarks/engine.py`` run by path would
shadow the ``engine`` package.) Float32 throughout; the engine and PyTorch get the same
initial weights and the same batches, and their losses and gradients are compared before
anything is timed. Sections:

mlp     one SGD step (forward, backward, update) of an MLP 784-512-256-10 (ReLU) at batch 128,
        written three ways: the engine (``nn.Sequential``, ``F.cross_entropy``, ``backward()``,
        ``optim.SGD``); by hand in NumPy (the backward derived on paper, below); PyTorch.
        The matmuls are the same in all three (about 0.3 GFLOP a step), so engine/numpy
        measures the engine's Python and memory overhead. Goal: engine <= 1.0x PyTorch.
lenet5  one momentum-SGD step of LeNet-5 (engine.models.lenet5) at batch 64, engine vs
        PyTorch. Goal: engine <= 2x PyTorch.
epoch   one epoch of the MLP 784-128-10 on full Fashion-MNIST (60,000 images, batch 64,
        lr 0.1), data shuffling and batching included, engine vs PyTorch; also the mean
        training loss of each (equal up to float32 rounding).
gpu     (with CuPy and a GPU) the MLP 784-512-256-10 step at batch 1024 on the GPU, against
        the same engine on the CPU and PyTorch on the GPU; the card is named in the JSON.

The hand-written NumPy backward, for logits Z3 = H2 W3^T + b3 and p = softmax(Z3) (MATH F5, F6):

    dZ3 = (p - onehot(y)) / N                    # (N, 10)
    dW3 = dZ3^T H2,  db3 = sum_n dZ3,  dH2 = dZ3 W3
    dZ2 = dH2 * [Z2 > 0]                         # ReLU passes the gradient where it was open
    ... and so on down to dW1 = dZ1^T X (no dX: the input needs no gradient).

Timings: ``--repeats`` timed steps per implementation, taken in turns of ``--block`` steps
(each turn after ``--warmup`` untimed ones) so that a noisy neighbour slows all alike; we
report the median and the 10th/90th percentiles; PyTorch gets as many threads as NumPy's
BLAS. The load average is recorded: above 1 on a 2-core machine, other work shares the
cores and the ratios are less trustworthy. Results: ``<out>/engine.json`` (the MLP step at
the top level as ``results``/``ratios``; ``lenet5``, ``epoch``, ``gpu`` beside it) and
``<out>/engine.png``.
"""
import engine  # before NumPy: it sets thread counts before the BLAS loads
import engine.functional as F
from engine import backend, data, models, optim
from engine.threads import blas_threads

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy

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


def engine_mlp(weights, x, y, device="cpu"):
    model = models.mlp(SIZES)                         # Linear-ReLU-Linear-ReLU-Linear
    for p, w in zip(model.parameters(), weights):
        p.data[...] = w
    model.to(device)
    x, y = engine.Tensor(x).to(device), backend.to_device(y, device)
    opt = optim.SGD(model.parameters(), lr=LR)

    def grads():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss.item(), [backend.to_numpy(p.grad) for p in model.parameters()]

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


def torch_mlp(weights, x, y, device="cpu"):
    import torch
    layers = []
    for fan_in, fan_out in zip(SIZES[:-1], SIZES[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1])
    with torch.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(torch.from_numpy(w))
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)

    def grads():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss.item(), [p.grad.cpu().numpy() for p in model.parameters()]

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


# ---- LeNet-5: the zoo's model against the same network in PyTorch ----

def torch_lenet5():
    import torch
    nn_ = torch.nn
    return nn_.Sequential(nn_.Conv2d(1, 6, 5, padding=2), nn_.ReLU(), nn_.MaxPool2d(2),
                          nn_.Conv2d(6, 16, 5), nn_.ReLU(), nn_.MaxPool2d(2), nn_.Flatten(),
                          nn_.Linear(400, 120), nn_.ReLU(), nn_.Linear(120, 84), nn_.ReLU(),
                          nn_.Linear(84, 10))


def lenet5_steps(x, y, with_torch):
    """{name: (step, grads)} for LeNet-5, SGD lr 0.01 momentum 0.9, same initial weights."""
    engine.manual_seed(0)
    model = models.build("lenet5")
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xe = engine.Tensor(x)

    def engine_grads():
        opt.zero_grad()
        loss = F.cross_entropy(model(xe), y)
        loss.backward()
        return loss.item(), [p.grad for p in model.parameters()]

    steps = {"engine": (lambda: (engine_grads(), opt.step()), engine_grads)}
    if with_torch:
        import torch
        tmodel = torch_lenet5()
        with torch.no_grad():
            for tp, p in zip(tmodel.parameters(), model.parameters()):
                tp.copy_(torch.from_numpy(p.data))
        topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def torch_grads():
            topt.zero_grad()
            loss = torch.nn.functional.cross_entropy(tmodel(xt), yt)
            loss.backward()
            return loss.item(), [p.grad.numpy() for p in tmodel.parameters()]

        steps["torch"] = (lambda: (torch_grads(), topt.step()), torch_grads)
    return steps


# ---- one epoch of the MLP 784-128-10 on full Fashion-MNIST ----

EPOCH_SIZES, EPOCH_LR, EPOCH_BATCH = (784, 128, 10), 0.1, 64


def epoch_runs(X, y, seed, with_torch):
    """{name: run_epoch() -> mean loss}: the same shuffled batches and initial weights."""
    order = numpy.random.default_rng(seed).permutation(len(X))
    batches = [order[i:i + EPOCH_BATCH] for i in range(0, len(X), EPOCH_BATCH)]
    engine.manual_seed(seed)
    model = models.mlp(EPOCH_SIZES)
    start = [p.data.copy() for p in model.parameters()]
    opt = optim.SGD(model.parameters(), lr=EPOCH_LR)

    def engine_epoch():
        total = 0.0
        for idx in batches:
            loss = F.cross_entropy(model(engine.Tensor(X[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        return total / len(X)

    runs = {"engine": engine_epoch}
    if with_torch:
        import torch
        tmodel = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
        with torch.no_grad():
            for tp, w in zip(tmodel.parameters(), start):
                tp.copy_(torch.from_numpy(w))
        topt = torch.optim.SGD(tmodel.parameters(), lr=EPOCH_LR)
        Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

        def torch_epoch():
            total = 0.0
            for idx in batches:
                i = torch.from_numpy(idx)
                loss = torch.nn.functional.cross_entropy(tmodel(Xt[i]), yt[i])
                topt.zero_grad()
                loss.backward()
                topt.step()
                total += loss.item() * len(idx)
            return total / len(X)

        runs["torch"] = torch_epoch
    return runs


def time_epochs(runs, repeats):
    """Each epoch function ``repeats`` times, in turns; (seconds per epoch, first mean loss)."""
    times, losses = {n: [] for n in runs}, {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            loss = run()
            times[name].append(time.perf_counter() - start)
            losses.setdefault(name, loss)
    return times, losses


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


def ratios(results, pairs=(("engine", "numpy"), ("engine", "torch"), ("numpy", "torch"))):
    med = {name: r["median_ms"] for name, r in results.items()}
    return {f"{a}/{b}": med[a] / med[b] for a, b in pairs if a in med and b in med}


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

def usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info(threads, threads_how, torch_version, torch_threads):
    import numba
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
            "python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__,
            "blas": blas, "torch": torch_version, "blas_threads": threads, "blas_threads_from": threads_how,
            "torch_threads": torch_threads, "load_average_before": list(os.getloadavg()),
            "command": " ".join(["python -m benchmarks.engine"] + sys.argv[1:]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


# ---- report ----

def print_table(title, results, ratio):
    print(f"\n{title}")
    print(f"{'implementation':<16}{'median ms':>11}{'p10 ms':>9}{'p90 ms':>9}{'runs':>7}")
    for name, r in results.items():
        print(f"{name:<16}{r['median_ms']:>11.3f}{r['p10_ms']:>9.3f}{r['p90_ms']:>9.3f}{r['steps']:>7}")
    for name, value in ratio.items():
        print(f"{name:<16}{value:>11.2f}x")


LABELS = {"engine": "mpigrad\nengine", "numpy": "NumPy\nby hand", "torch": "PyTorch",
          "engine_cuda": "engine\n(GPU)", "engine_cpu": "engine\n(CPU)", "torch_cuda": "PyTorch\n(GPU)"}
COLORS = {"engine": "#d9822b", "numpy": "#4c78a8", "torch": "#7f7f7f", "engine_cuda": "#d9822b",
          "engine_cpu": "#f2b880", "torch_cuda": "#7f7f7f"}


def plot(panels, info, path):
    """One bar panel per section: median with p10-p90 whiskers, the ratios written on top."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, unit, results, ratio) in zip(axes[0], panels):
        names = list(results)
        med = [results[n]["median_ms"] for n in names]
        err = [[m - results[n]["p10_ms"] for n, m in zip(names, med)],
               [results[n]["p90_ms"] - m for n, m in zip(names, med)]]
        scale = 1e-3 if unit == "s" else 1
        bars = ax.bar(range(len(names)), [m * scale for m in med], yerr=numpy.asarray(err) * scale,
                      capsize=6, color=[COLORS.get(n, "#999999") for n in names])
        for bar, m in zip(bars, med):
            ax.text(bar.get_x() + bar.get_width() / 2, m * scale / 2, f"{m * scale:.3g} {unit}",
                    ha="center", color="white", fontsize=10, fontweight="bold")
        ax.set_xticks(range(len(names)), [LABELS.get(n, n) for n in names], fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(f"{unit} (median; whiskers p10-p90)")
        ax.set_ylim(0, max(results[n]["p90_ms"] for n in names) * scale * 1.35)
        ax.text(0.5, 0.97, "\n".join(f"{k} = {v:.2f}x" for k, v in ratio.items()), transform=ax.transAxes,
                ha="center", va="top", fontsize=9,
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="#cccccc"))
    fig.suptitle(f"mpigrad engine vs NumPy and PyTorch, float32 | {info['cpu']}, {info['cores']} cores, "
                 f"BLAS threads {info['blas_threads']}, load {info['load_average_before'][0]:.2f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the sections ----

def run_mlp(args, with_torch):
    rng = numpy.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch_size, SIZES[0])).astype(numpy.float32)  # (N, 784)
    y = rng.integers(0, SIZES[-1], args.batch_size)                             # (N,) int64
    weights = init_weights(args.seed)
    makers = {"engine": engine_mlp, "numpy": numpy_mlp}
    if with_torch:
        makers["torch"] = torch_mlp
    impls = {name: make(weights, x, y) for name, make in makers.items()}
    for name, (_, grads) in impls.items():
        if name != "numpy":
            check_same_gradients(impls["numpy"][1], grads, name)
    print(f"mlp: gradients agree with the hand-written NumPy step (rtol={GRAD_RTOL}, "
          f"atol={GRAD_ATOL_OF_MAX} * max|grad|): " + ", ".join(n for n in impls if n != "numpy"))
    times = time_in_turns({name: step for name, (step, _) in impls.items()}, args.repeats, args.warmup, args.block)
    results = {name: summarize(t) for name, t in times.items()}
    ratio = ratios(results)
    print_table(f"MLP {'-'.join(map(str, SIZES))} step, batch {args.batch_size}", results, ratio)
    if args.profile:
        profile(impls["engine"][0], args.repeats, args.profile)
    return results, ratio


def run_lenet5(args, with_torch):
    rng = numpy.random.default_rng(args.seed)
    x = rng.standard_normal((64, 1, 28, 28)).astype(numpy.float32)              # (64, 1, 28, 28)
    y = rng.integers(0, 10, 64)
    steps = lenet5_steps(x, y, with_torch)
    if with_torch:
        check_same_gradients(steps["torch"][1], steps["engine"][1], "lenet5 engine vs torch")
        print("lenet5: loss and gradients agree with PyTorch's")
    times = time_in_turns({n: s for n, (s, _) in steps.items()}, args.repeats, args.warmup, args.block)
    results = {name: summarize(t) for name, t in times.items()}
    ratio = ratios(results, [("engine", "torch")])
    print_table("LeNet-5 step, batch 64, SGD momentum 0.9", results, ratio)
    return {"batch_size": 64, "results": results, "ratios": ratio, "grad_check_vs_torch": with_torch}


def run_epoch(args, with_torch):
    try:
        X, y, _, _ = data.load_fashion_mnist()
    except (OSError, ValueError) as exc:
        print(f"epoch: skipped, Fashion-MNIST not found ({exc})")
        return {"skipped": f"Fashion-MNIST not found: {exc}"}
    X = (X - 0.5) / 0.5
    if args.quick:
        X, y = X[:2048], y[:2048]
    runs = epoch_runs(X, y, args.seed, with_torch)
    times, losses = time_epochs(runs, args.epoch_repeats)
    results = {name: summarize(t) for name, t in times.items()}
    ratio = ratios(results, [("engine", "torch")])
    print_table(f"one epoch, MLP 784-128-10, Fashion-MNIST ({len(X):,} images), batch {EPOCH_BATCH}, "
                f"lr {EPOCH_LR} (ms per epoch)", results, ratio)
    print("mean training loss of the first epoch: " + ", ".join(f"{n} {v:.5f}" for n, v in losses.items()))
    return {"images": len(X), "batch_size": EPOCH_BATCH, "lr": EPOCH_LR, "sizes": list(EPOCH_SIZES),
            "results": results, "ratios": ratio, "first_epoch_mean_loss": losses}


def run_gpu(args, with_torch):
    if not backend.cupy_available():
        print("gpu: skipped, no CuPy or no GPU")
        return {"skipped": "no CuPy or no NVIDIA GPU on this machine"}
    import cupy
    batch = 1024
    rng = numpy.random.default_rng(args.seed)
    x = rng.standard_normal((batch, SIZES[0])).astype(numpy.float32)
    y = rng.integers(0, SIZES[-1], batch)
    weights = init_weights(args.seed)
    impls = {"engine_cuda": engine_mlp(weights, x, y, "cuda"), "engine_cpu": engine_mlp(weights, x, y, "cpu")}
    torch_cuda = False
    if with_torch:
        import torch
        torch_cuda = torch.cuda.is_available()
        if torch_cuda:
            impls["torch_cuda"] = torch_mlp(weights, x, y, "cuda")
    for name in impls:
        if name != "engine_cpu":
            check_same_gradients(impls["engine_cpu"][1], impls[name][1], name)
    # step() ends with loss.item(), which waits for the GPU: each timed step is complete
    times = time_in_turns({n: s for n, (s, _) in impls.items()}, args.repeats, args.warmup, args.block)
    results = {name: summarize(t) for name, t in times.items()}
    ratio = ratios(results, [("engine_cuda", "engine_cpu"), ("engine_cuda", "torch_cuda")])
    print_table(f"GPU: MLP {'-'.join(map(str, SIZES))} step, batch {batch}", results, ratio)
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return {"card": name, "cupy": cupy.__version__, "batch_size": batch, "results": results,
            "ratios": ratio, "torch_cuda": torch_cuda}


SECTIONS = ("mlp", "lenet5", "epoch", "gpu")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=128, help="of the mlp section")
    parser.add_argument("--repeats", type=int, default=1000, help="timed steps per implementation")
    parser.add_argument("--block", type=int, default=100, help="timed steps in one turn")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before each turn")
    parser.add_argument("--epoch-repeats", type=int, default=3, help="timed epochs per implementation")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also print the N functions where the engine's MLP step spends most time")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup, args.block, args.epoch_repeats = 5, 2, 5, 1
    sections = args.only or SECTIONS

    threads, threads_how = blas_threads()  # before torch loads its own thread pools
    torch_version = torch_threads = None
    if not args.no_torch:
        try:
            import torch
            torch.set_num_threads(threads or usable_cores())
            torch_version, torch_threads = torch.__version__, torch.get_num_threads()
        except ImportError:
            pass
    with_torch = torch_version is not None
    info = machine_info(threads, threads_how, torch_version, torch_threads)
    report = {"benchmark": "engine", "machine": info}
    panels = []
    if "mlp" in sections:
        results, ratio = run_mlp(args, with_torch)
        report.update(results=results, ratios=ratio)
        info.update(batch_size=args.batch_size, sizes=list(SIZES), dtype="float32", lr=LR,
                    grad_check={"rtol": GRAD_RTOL, "atol_of_max": GRAD_ATOL_OF_MAX, "passed": True})
        panels.append((f"MLP {'-'.join(map(str, SIZES))} step, batch {args.batch_size}", "ms", results, ratio))
    if "lenet5" in sections:
        report["lenet5"] = run_lenet5(args, with_torch)
        panels.append(("LeNet-5 step, batch 64", "ms", report["lenet5"]["results"], report["lenet5"]["ratios"]))
    if "epoch" in sections:
        report["epoch"] = run_epoch(args, with_torch)
        if "results" in report["epoch"]:
            panels.append((f"one epoch MLP 784-128-10,\nFashion-MNIST ({report['epoch']['images']:,}), batch 64",
                           "s", report["epoch"]["results"], report["epoch"]["ratios"]))
    if "gpu" in sections:
        report["gpu"] = run_gpu(args, with_torch)
        if "results" in report["gpu"]:
            panels.append((f"GPU {report['gpu']['card']}: MLP step, batch 1024", "ms",
                           report["gpu"]["results"], report["gpu"]["ratios"]))
    info.update(repeats=args.repeats, warmup=args.warmup, block=args.block, quick=args.quick,
                load_average_after=list(os.getloadavg()), sections=list(sections))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine.json").write_text(json.dumps(report, indent=2) + "\n")
    if panels:
        plot(panels, info, args.out / "engine.png")
    print(f"\nwrote {args.out / 'engine.json'} and {args.out / 'engine.png'}")


if __name__ == "__main__":
    main()
