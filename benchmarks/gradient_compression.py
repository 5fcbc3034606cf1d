"""Compressed gradients under data parallelism on 4 ranks: accuracy against bytes sent, the
compression time, and the cost model's verdict for a 10 Gb/s link (MATH A6).

    mpirun -n 4 python -m mpi4py -m benchmarks.gradient_compression            # minutes
    mpirun -n 4 python -m mpi4py -m benchmarks.gradient_compression --quick    # the test's

Writes <out>/gradient_compression.json and gradient_compression.png (default out:
benchmarks/results). Every run is the runner's `--strategy dp` (strategies/compressed_dp.py)
with the same model, data, seed and epochs as plain dp: the MLP (3 epochs) and LeNet-5
(1 epoch) on full Fashion-MNIST when installed, global batch 128, lr 0.1 (LeNet-5: 0.05,
momentum 0.9 for both). Bytes are the counters' (equal to each compressor's formula).

Compression time: each compressor's compress + decompress of the MLP's gradient (n floats),
one rank, median of repeats. The cost model (one step's exchange on p = 4 ranks of a link
alpha = 30 us, 1/beta = 1.25 GB/s, i.e. 10 Gb/s Ethernet):

    dp          2 (p - 1) alpha + 2 (p - 1)/p n w beta
    compressor  c n + its message count x alpha + bytes_sent(p, n, w) beta

with c its measured seconds per element: the model size n from which it pays is where the two
lines cross.
"""
import argparse
import pathlib
import time

import numpy

import collectives
from engine.process import configure_process
from engine import models
from strategies import loop, train
from strategies.compressed_dp import CompressedDataParallel
from strategies.compression import build

from benchmarks import measure
from benchmarks.mpi_runs import cpu_busy, on_first

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNS = {                                      # label: flags after --strategy dp
    "dp": "",
    "fp16": "--compress fp16",
    "topk 1 % EF": "--compress topk --ratio 0.01 --error-feedback",
    "topk 0.5 % EF": "--compress topk --ratio 0.005 --error-feedback",
    "topk 0.1 % EF": "--compress topk --ratio 0.001 --error-feedback",
    "topk 0.1 % DGC": "--compress topk --ratio 0.001 --momentum-correction 0.9 --momentum 0 --warmup-steps 200",
    "topk 1 % no EF": "--compress topk --ratio 0.01 --no-error-feedback",
    "randomk 1 % EF": "--compress randomk --ratio 0.01 --error-feedback",
    "qsgd s=16": "--compress qsgd --levels 16",
    "sign EF": "--compress sign --error-feedback",
    "sign no EF": "--compress sign --no-error-feedback",
    "powersgd r=2": "--compress powersgd --rank 2",
    "powersgd r=1": "--compress powersgd --rank 1",
}
MODELS = {"mlp": "--model mlp --epochs 3 --lr 0.1", "lenet5": "--model lenet5 --epochs 1 --lr 0.05"}
LINK = dict(alpha=30e-6, beta=1 / 1.25e9)                # 10 Gb/s Ethernet, assumed
SIZES = [10 ** e for e in range(4, 10)]


def run_all(comm, common, quick, say):
    data, records = None, {}
    for model, model_flags in MODELS.items():
        for label, flags in RUNS.items():
            args = train.parse_args(f"{common} {model_flags} --strategy dp {flags}".split())
            if quick:
                args.epochs, args.max_steps = 1, 8
            data = data or loop.load_data(args)
            r = on_first(comm, comm.size, lambda sub: train.run(args, sub, data))
            if comm.rank == 0:
                records[f"{model}: {label}"] = r
                say(f"  {model:<7}{label:<16} acc {r['final_test_accuracy']:.4f}  "
                    f"{r['bytes_sent_per_rank_per_step']:>12,.0f} B/rank/step  {r['train_seconds']:6.1f} s", flush=True)
    return records


def compression_seconds(repeats=20):
    """{label: seconds of compress + decompress of the MLP's gradient} (one rank, no messages)."""
    params = models.build("mlp").parameters()[::-1]                     # dp's flat order
    shapes = CompressedDataParallel.matrix_shapes(params)
    n = sum(p.data.size for p in params)
    g = numpy.random.default_rng(0).standard_normal(n).astype(numpy.float32)
    out = {}
    for label, flags in RUNS.items():
        if label == "dp":
            continue
        words = flags.split()
        name = words[words.index("--compress") + 1]
        value = lambda flag, default: type(default)(words[words.index(flag) + 1]) if flag in words else default
        c = build(name, ratio=value("--ratio", 0.01), levels=value("--levels", 16), rank=value("--rank", 2),
                  error_feedback=False if "--no-error-feedback" in words else None, shapes=shapes)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            c.decompress(c.compress(g), n)
            times.append(time.perf_counter() - t)
        out[label] = float(numpy.median(times))
    return out


def cost_model(records, seconds, n, p=4, w=4):
    """Seconds of one exchange against the model size, dp and each compressor (see above)."""
    a, b = LINK["alpha"], LINK["beta"]
    lines = {"dp": [2 * (p - 1) * a + 2 * (p - 1) / p * m * w * b for m in SIZES]}
    base = records.get("mlp: dp")
    for label, s in seconds.items():
        r = records.get(f"mlp: {label}")
        if r is None or base is None:
            continue
        ratio = r["bytes_sent_per_rank_per_step"] / base["bytes_sent_per_rank_per_step"]
        messages = r["messages_sent_per_rank"] / max(1, r["steps"])
        lines[label] = [s / n * m + messages * a + ratio * 2 * (p - 1) / p * m * w * b for m in SIZES]
    return lines


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(19, 5))
    for ax, model in zip(axes, MODELS):
        for label, r in result["runs"].items():
            if label.startswith(model + ":"):
                name = label.split(": ", 1)[1]
                ax.plot(r["bytes_sent_per_rank_per_step"], r["final_test_accuracy"], "o")
                ax.annotate(name, (r["bytes_sent_per_rank_per_step"], r["final_test_accuracy"]), fontsize=7)
        ax.set(xscale="log", xlabel="bytes sent per rank per step", ylabel="test accuracy",
               title=f"{model}: accuracy against bytes (4 ranks)")
        ax.grid(alpha=0.3)
    ax = axes[2]
    for label, seconds in result["cost_model"].items():
        ax.loglog(SIZES, [s * 1e3 for s in seconds], "-" if label == "dp" else "--", label=label)
    ax.set(xlabel="gradient entries n", ylabel="ms per exchange (10 Gb/s, p = 4, model)",
           title="where compression starts to pay")
    ax.legend(fontsize=6)
    measure.save_figure(fig, path, result["machine"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled subset, 8 steps")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    configure_process()
    comm = collectives.world()
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    full = measure.full_scale(args.quick)
    common = (f"--dataset {'fashion-mnist' if full else 'mnist'} --batch-size 128 --momentum 0.9 "
              "--seed 0 --quiet")
    busy = on_first(comm, 1, lambda sub: cpu_busy())
    records = run_all(comm, common, args.quick, say)
    if comm.rank != 0:
        return
    n = records["mlp: dp"]["n_params"]
    seconds = compression_seconds(repeats=3 if args.quick else 20)
    for model in MODELS:
        base = records[f"{model}: dp"]
        for label, r in records.items():
            if label.startswith(model + ":"):
                r["fewer_bytes_than_dp"] = base["bytes_sent_per_rank_per_step"] / r["bytes_sent_per_rank_per_step"]
                r["accuracy_minus_dp"] = r["final_test_accuracy"] - base["final_test_accuracy"]
    info = measure.machine_info("mpirun -n 4 python -m mpi4py -m benchmarks.gradient_compression")
    result = dict(machine=f"{info['cpu']}, {info['usable_cores']} cores, {comm.size} ranks", machine_info=info,
                  cpu_busy_before=busy, flags=common, link=LINK, sizes=SIZES, compression_seconds=seconds,
                  cost_model=cost_model(records, seconds, n),
                  runs={label: {k: v for k, v in r.items() if k not in ("timeline",)} for label, r in records.items()})
    measure.save_json(result, args.out / "gradient_compression.json")
    plot(result, args.out / "gradient_compression.png")
    say(f"wrote {args.out / 'gradient_compression.json'} and gradient_compression.png")


if __name__ == "__main__":
    main()
