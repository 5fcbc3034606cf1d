"""Each Numba kernel against its NumPy reference, and what compiling them costs.

    python -m benchmarks.kernels                      # about a minute
    python -m benchmarks.kernels --quick --out /tmp   # a smoke test

Speed: every kernel of engine/kernels/cpu.py on the shapes of a LeNet-5 step at batch 64
(float32), against the function of the same name in engine/kernels/reference.py (whole-array
NumPy), median of ``--repeats`` calls after a warm-up call. Also the whole convolution, forward
and backward (im2col, the batched matrix products, col2im), once with each set of kernels.
Goal from the issue: at least 2x for convolution and pooling.

Compilation: a fresh process with an empty ``NUMBA_CACHE_DIR`` imports the engine and calls
every kernel once (the first call compiles and writes the cache); a second fresh process does
the same with the cache written by the first (the first call loads machine code instead).
Both report each kernel's first-call time.

The two implementations share one signature per kernel (engine/kernels/__init__.py), so each
case below is one argument tuple given to both.

Results: ``<out>/kernels.json`` and ``<out>/kernels.png``.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy

from benchmarks import measure
from engine.kernels import cpu, reference
from engine.process import configure_process

ROOT = Path(__file__).resolve().parents[1]


def lenet5_cases(rng):
    """(label, kernel name, args), LeNet-5 shapes at batch 64."""
    x1 = rng.standard_normal((64, 1, 28, 28)).astype(numpy.float32)   # conv1 input
    x2 = rng.standard_normal((64, 6, 14, 14)).astype(numpy.float32)   # conv2 input
    p1 = rng.standard_normal((64, 6, 28, 28)).astype(numpy.float32)   # pool1 input
    p2 = rng.standard_normal((64, 16, 10, 10)).astype(numpy.float32)  # pool2 input
    c1, c2 = cpu.im2col(x1, 5, 5, 1, 2), cpu.im2col(x2, 5, 5, 1, 0)
    cases = [("conv1 (64,1,28,28) k5 p2", "im2col", (x1, 5, 5, 1, 2)),
             ("conv2 (64,6,14,14) k5", "im2col", (x2, 5, 5, 1, 0)),
             ("conv1 (64,1,28,28) k5 p2", "col2im", (c1, x1.shape, 5, 5, 1, 2)),
             ("conv2 (64,6,14,14) k5", "col2im", (c2, x2.shape, 5, 5, 1, 0))]
    for label, p in (("pool1 (64,6,28,28) k2", p1), ("pool2 (64,16,10,10) k2", p2)):
        out, argmax = cpu.max_pool_forward(p, 2, 2, 2, 0)
        cases += [(label, "max_pool_forward", (p, 2, 2, 2, 0)),
                  (label, "max_pool_backward", (out, argmax, p.shape)),
                  (label, "avg_pool_forward", (p, 2, 2, 2, 0)),
                  (label, "avg_pool_backward", (out, p.shape, 2, 2, 2, 0))]
    for n in (64, 128):
        z = rng.standard_normal((n, 10)).astype(numpy.float32)
        y = rng.integers(0, 10, n)
        _, probs = cpu.cross_entropy_forward(z, y)
        cases += [(f"logits ({n},10)", "cross_entropy_forward", (z, y)),
                  (f"logits ({n},10)", "cross_entropy_backward", (probs, y, 1 / n))]
    g = rng.standard_normal((128, 512)).astype(numpy.float32)
    z = numpy.maximum(rng.standard_normal((128, 512)), 0).astype(numpy.float32)
    cases.append(("(128,512)", "relu_backward", (g, z)))
    p, d = (rng.standard_normal(512 * 784).astype(numpy.float32) for _ in range(2))
    cases += [("W1 of the MLP (512*784)", "sgd_update_", (p, d, 1e-9)),
              ("W1 of the MLP (512*784)", "momentum_update_", (p, d, 0.9, 1.0))]
    return cases


def median_ms(fn, args, repeats):
    return measure.median_seconds(lambda: fn(*args), repeats) * 1e3


def conv_forward_backward(impl, x, weight, g, stride, padding):
    """Conv2d forward and backward as engine/ops/conv.py does it, with ``impl``'s im2col/col2im."""
    O, C, kh, kw = weight.shape
    w2 = weight.reshape(O, -1)
    cols = impl.im2col(x, kh, kw, stride, padding)
    z = numpy.matmul(w2, cols)                                   # (N, O, OH*OW)
    g = g.reshape(z.shape)
    dw = numpy.matmul(g, cols.transpose(0, 2, 1)).sum(axis=0)
    dcols = numpy.matmul(w2.T, g)
    dx = impl.col2im(dcols, x.shape, kh, kw, stride, padding)
    return z, dw, dx


COMPILE_CHILD = """
import time, json, sys
start = time.perf_counter()
import engine
from engine.kernels import cpu  # Numba loads here, not at import engine
import numpy as np
times = {"import engine and Numba": time.perf_counter() - start}
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
calls = [("im2col", (x, 3, 3, 1, 1)), ("col2im", (np.ones((2, 27, 64), np.float32), x.shape, 3, 3, 1, 1)),
         ("max_pool_forward", (x, 2, 2, 2, 0)),
         ("max_pool_backward", (np.ones((2, 3, 4, 4), np.float32), np.zeros((2, 3, 4, 4), np.int64), x.shape)),
         ("avg_pool_forward", (x, 2, 2, 2, 0)), ("avg_pool_backward", (np.ones((2, 3, 4, 4), np.float32), x.shape, 2, 2, 2, 0)),
         ("cross_entropy_forward", (np.ones((4, 10), np.float32), np.zeros(4, np.int64))),
         ("cross_entropy_backward", (np.ones((4, 10), np.float32), np.zeros(4, np.int64), 0.25)),
         ("relu_backward", (np.ones(8, np.float32), np.ones(8, np.float32))),
         ("sgd_update_", (np.ones(8, np.float32), np.ones(8, np.float32), 0.1)),
         ("momentum_update_", (np.ones(8, np.float32), np.ones(8, np.float32), 0.9, 1.0))]
for name, args in calls:
    t = time.perf_counter()
    getattr(cpu, name)(*args)
    times[name] = time.perf_counter() - t
print(json.dumps(times))
"""


def compile_times():
    """{"cold": {kernel: s}, "cached": {kernel: s}}: first calls with an empty, then a warm cache."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "cached"):
            run = subprocess.run([sys.executable, "-c", COMPILE_CHILD], cwd=ROOT, env=env,
                                 capture_output=True, text=True, check=True)
            out[label] = json.loads(run.stdout.strip().splitlines()[-1])
    return out


def plot(rows, conv, compiled, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [2, 1]})
    labels = [f"{r['kernel']}\n{r['case']}" for r in rows] + ["conv fwd+bwd\nconv1", "conv fwd+bwd\nconv2"]
    speedups = [r["speedup"] for r in rows] + [c["speedup"] for c in conv]
    ax.barh(range(len(labels)), speedups, color=["#d9822b" if s >= 2 else "#4c78a8" for s in speedups])
    ax.axvline(1, color="black", lw=0.8)
    ax.axvline(2, color="#d9822b", lw=0.8, ls="--", label="goal 2x (conv, pooling)")
    for i, s in enumerate(speedups):
        ax.text(s, i, f" {s:.1f}x", va="center", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=6.5)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of the Numba kernel over its NumPy reference (median, float32, LeNet-5 shapes)")
    ax.legend(fontsize=8, loc="lower right")
    names = [k for k in compiled["cold"] if k != "import engine and Numba"]
    cold = [compiled["cold"][k] for k in names]
    cached = [compiled["cached"][k] for k in names]
    pos = numpy.arange(len(names))
    bx.barh(pos - 0.2, cold, 0.4, label=f"first call, empty cache (total {sum(cold):.1f} s)", color="#4c78a8")
    bx.barh(pos + 0.2, cached, 0.4, label=f"first call, cached (total {sum(cached):.2f} s)", color="#d9822b")
    bx.set_yticks(pos, names, fontsize=7)
    bx.invert_yaxis()
    bx.set_xscale("log")
    bx.set_xlabel("seconds (log scale)")
    bx.legend(fontsize=7, loc="lower right")
    bx.set_title("compilation: first call per kernel (float32)", fontsize=9)
    measure.save_figure(fig, path, dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 3
    process = configure_process()
    machine = measure.machine_info("python -m benchmarks.kernels")
    rng = numpy.random.default_rng(0)
    rows = []
    print(f"{'kernel':<24}{'case':<27}{'numba ms':>10}{'numpy ms':>10}{'speed-up':>10}")
    for case, name, kernel_args in lenet5_cases(rng):
        fast = median_ms(getattr(cpu, name), kernel_args, args.repeats)
        slow = median_ms(getattr(reference, name), kernel_args, args.repeats)
        rows.append({"kernel": name, "case": case, "numba_ms": fast, "numpy_ms": slow, "speedup": slow / fast})
        print(f"{name:<24}{case:<27}{fast:>10.3f}{slow:>10.3f}{slow / fast:>9.2f}x")
    conv = []
    for label, xs, ws, padding in (("conv1", (64, 1, 28, 28), (6, 1, 5, 5), 2), ("conv2", (64, 6, 14, 14), (16, 6, 5, 5), 0)):
        x = rng.standard_normal(xs).astype(numpy.float32)
        w = rng.standard_normal(ws).astype(numpy.float32)
        OH = xs[2] + 2 * padding - 4
        g = rng.standard_normal((64, ws[0], OH, OH)).astype(numpy.float32)
        fast = median_ms(lambda: conv_forward_backward(cpu, x, w, g, 1, padding), (), args.repeats)
        slow = median_ms(lambda: conv_forward_backward(reference, x, w, g, 1, padding), (), args.repeats)
        conv.append({"case": label, "input": list(xs), "weight": list(ws), "numba_ms": fast, "numpy_ms": slow,
                     "speedup": slow / fast})
        print(f"{'conv forward+backward':<24}{label:<27}{fast:>10.3f}{slow:>10.3f}{slow / fast:>9.2f}x")
    compiled = compile_times()
    for label in ("cold", "cached"):
        total = sum(v for k, v in compiled[label].items() if k != "import engine and Numba")
        print(f"first calls of all kernels, {label} cache: {total:.2f} s "
              f"(import engine and Numba {compiled[label]['import engine and Numba']:.2f} s)")
    machine.update(process=process, load_average_after=list(os.getloadavg()), repeats=args.repeats,
                   quick=args.quick)
    report = {"benchmark": "kernels", "rows": rows, "conv": conv, "compile_seconds": compiled,
              "machine": machine}
    measure.save_json(report, args.out / "kernels.json")
    plot(rows, conv, compiled, args.out / "kernels.png")
    print(f"wrote {args.out / 'kernels.json'} and {args.out / 'kernels.png'}")


if __name__ == "__main__":
    main()
