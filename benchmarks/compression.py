"""Model compression on LeNet-300-100 and LeNet-5: pruning curves, int8, QAT, Deep Compression,
structured pruning's speed-up, the sparse kernel's crossover (MATH A7).

    python -m benchmarks.compression            # full Fashion-MNIST when installed; minutes
    python -m benchmarks.compression --quick    # the bundled subset, tiny budgets (the test's)

Writes <out>/compression.json and compression.png (default out: benchmarks/results). One
process, one BLAS thread (the machine's load recorded before and after).

  baseline   each model trained with SGD (momentum 0.9, batch 128) for --epochs
  pruning    accuracy against % of weights kept, from the baseline, with the same fine-tuning
             budget (one epoch of steps, lr / 5) for every method, and the dense model
             fine-tuned the same way as the reference (fine-tuning alone also gains):
               one-shot    masks at s, then fine-tune
               iterative   3 rounds, kept fraction (1 - s)^(k/3), a third of the budget each
               gradual     Zhu & Gupta: s_t = s (1 - (1 - t/T)^3) for t <= T = 3/4 of the budget,
                           masks recomputed every 1/20 of it, then fine-tune at s
  int8       post-training, per-channel and per-tensor (minmax), per-channel (percentile):
             accuracy and the saved file's bytes against the float32 .npz; QAT: one epoch of
             fake-quant fine-tuning from the baseline, then converted
  deep       Deep Compression (Han et al. 2016): prune (LeNet-300-100 to 92 %, LeNet-5 to 90 %)
             + fine-tune, share (5 bits fc, 8 bits conv) + fine-tune, Huffman: bytes written
             by each stage, accuracy, beside the paper's 40x / 39x on MNIST
  structured LeNet-300-100 with half its hidden neurons removed: forward time against the
             original (median of repeats) and the accuracy after one epoch of fine-tuning
  sparse     the CSR kernel against dense BLAS at 50 ... 99 % sparsity (a 300 x 784 weight, a
             batch of 256); the int8 matmul kernel against float32 BLAS at 256 x 784 x 300
"""
import argparse
import copy
import os
import pathlib
import tempfile
import time

import numpy

from engine import Tensor, data, manual_seed, models, no_grad
from engine.compress import (apply_masks, convert, deep_compression_bytes, magnitude_masks, prepare_qat,
                             prune_neurons, quantize_model, save_quantized, share_weights)
from engine.compress.finetune import accuracy, fine_tune, inputs
from engine.compress.int8 import time_against_float32
from engine.compress.sparse import time_sparse_vs_dense
from engine.process import configure_process

from benchmarks import measure
from benchmarks.mpi_runs import cpu_busy

ROOT = pathlib.Path(__file__).resolve().parents[1]
LR = {"lenet300": 0.05, "lenet5": 0.02}
DEEP = {"lenet300": (0.92, 5), "lenet5": (0.90, 5)}          # (sparsity, fc bits); conv: 8 bits


def one_shot(model, X, y, s, steps, lr):
    pruning = apply_masks(model, magnitude_masks(model, s))
    fine_tune(model, X, y, steps=steps, lr=lr)
    return pruning


def iterative(model, X, y, s, steps, lr):
    pruning = None
    for k in (1, 2, 3):
        if pruning is not None:
            pruning.remove()
        pruning = apply_masks(model, magnitude_masks(model, 1 - (1 - s) ** (k / 3)))
        fine_tune(model, X, y, steps=steps // 3, lr=lr, seed=k)
    return pruning


def gradual(model, X, y, s, steps, lr):
    """Zhu & Gupta's cubic schedule over 3/4 of the steps, masks every 1/20 of them."""
    T, every, state = 3 * steps // 4, max(1, steps // 20), {"pruning": None}

    def on_step(t, optimizer):
        if t % every == 0 and t <= T:
            if state["pruning"] is not None:
                state["pruning"].remove()
            level = s * (1 - (1 - t / T) ** 3)
            state["pruning"] = apply_masks(model, magnitude_masks(model, level), optimizer=optimizer)

    fine_tune(model, X, y, steps=steps, lr=lr, on_step=on_step)
    return state["pruning"]


METHODS = {"one-shot": one_shot, "iterative": iterative, "gradual": gradual}


def pruning_curves(name, base, X, y, Xt, yt, sparsities, steps, lr, say):
    curves = {}
    for method, prune in METHODS.items():
        curves[method] = []
        for s in sparsities:
            model = copy.deepcopy(base)
            kept = 1 - prune(model, X, y, s, steps, lr).sparsity()          # each method's Pruning
            curves[method].append({"sparsity": s, "kept": kept, "test_accuracy": accuracy(model, Xt, yt)})
            say(f"  {name} {method:<9} s = {s:.2f}: kept {curves[method][-1]['kept']:.3f}, "
                f"acc {curves[method][-1]['test_accuracy']:.4f}", flush=True)
    return curves


def int8_runs(base, X, Xt, yt, folder):
    calibration = [Tensor(X[i:i + 128]) for i in range(0, 8 * 128, 128)]
    float_path = os.path.join(folder, "float32.npz")
    numpy.savez(float_path, **base.state_dict())
    out = {"float32": {"test_accuracy": accuracy(base, Xt, yt), "bytes": os.path.getsize(float_path)}}
    for label, kwargs in (("per-channel minmax", dict(per_channel=True)), ("per-tensor minmax", dict(per_channel=False)),
                          ("per-channel percentile", dict(per_channel=True, observer="percentile"))):
        q = quantize_model(base, calibration, **kwargs)
        path = os.path.join(folder, f"{label.replace(' ', '-')}.npz")
        save_quantized(q, path)
        out[label] = {"test_accuracy": accuracy(q, Xt, yt), "bytes": os.path.getsize(path)}
    return out


def qat_run(base, X, y, Xt, yt, steps, lr):
    qat = prepare_qat(copy.deepcopy(base))
    fine_tune(qat, X, y, steps=steps, lr=lr)
    qat.eval()
    return {"test_accuracy": accuracy(convert(qat), Xt, yt)}


def deep_compression(name, base, X, y, Xt, yt, steps, lr, folder):
    s, fc_bits = DEEP[name]
    model = copy.deepcopy(base)
    pruning = apply_masks(model, magnitude_masks(model, s))
    fine_tune(model, X, y, steps=steps, lr=lr)
    pruned_accuracy = accuracy(model, Xt, yt)
    bits = {layer_name: (8 if hasattr(layer, "in_channels") else fc_bits)
            for layer_name, layer in model.named_children() if hasattr(layer, "weight")}
    sharing = share_weights(model, bits=bits, masks=pruning.masks)
    fine_tune(model, X, y, steps=steps, lr=lr, sharing=sharing)
    sizes = deep_compression_bytes(model.state_dict(), pruning.masks, sharing, directory=folder)
    return {"sparsity": s, "fc_bits": fc_bits, "pruned_accuracy": pruned_accuracy,
            "test_accuracy": accuracy(model, Xt, yt), **sizes}


def structured(base, X, y, Xt, yt, steps, lr, repeats=20):
    smaller, kept = prune_neurons(base, fraction=0.5)
    batch = Tensor(X[:256])

    def seconds(model):
        times = []
        with no_grad():
            for _ in range(repeats):
                t = time.perf_counter()
                model(batch)
                times.append(time.perf_counter() - t)
        return float(numpy.median(times))

    before, after = seconds(base), seconds(smaller)
    fine_tune(smaller, X, y, steps=steps, lr=lr)
    return {"forward_seconds": before, "smaller_forward_seconds": after, "speed_up": before / after,
            "parameters": sum(p.data.size for p in base.parameters()),
            "smaller_parameters": sum(p.data.size for p in smaller.parameters()),
            "test_accuracy": accuracy(base, Xt, yt), "smaller_test_accuracy": accuracy(smaller, Xt, yt)}


def plot(result, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(result["models"])
    fig, axes = plt.subplots(1, len(names) + 2, figsize=(6 * (len(names) + 2), 4.6))
    for ax, name in zip(axes, names):
        entry = result["models"][name]
        for method, points in entry["pruning"].items():
            ax.plot([100 * p["kept"] for p in points], [p["test_accuracy"] for p in points], "o-", label=method)
        ax.axhline(entry["dense_fine_tuned_accuracy"], color="grey", ls="--", label="dense, fine-tuned the same")
        ax.axhline(entry["dense_fine_tuned_accuracy"] - 0.005, color="grey", ls=":", label="... - 0.5 point")
        ax.set(xscale="log", xlabel="% of weights kept", ylabel="test accuracy", title=f"{name}: pruning")
        ax.legend(fontsize=8)
    ax = axes[len(names)]
    stages = ("float32", "pruned", "shared", "huffman")
    for i, name in enumerate(names):
        deep = result["models"][name]["deep_compression"]
        ax.bar(numpy.arange(4) + 0.4 * i - 0.2, [deep[s] for s in stages], 0.4,
               label=f"{name}: {deep['huffman_ratio']:.0f}x, acc {deep['test_accuracy']:.3f}")
    ax.set(xticks=range(4), yscale="log", ylabel="bytes written", title="Deep Compression, stage by stage")
    ax.set_xticklabels(stages)
    ax.legend(fontsize=8)
    ax = axes[-1]
    sparse = result["sparse_kernel"]
    ax.plot([100 * r["sparsity"] for r in sparse], [r["ratio"] for r in sparse], "o-")
    ax.axhline(1, color="grey", ls=":")
    ax.set(xlabel="% of weights zero", ylabel="CSR kernel time / dense BLAS time", yscale="log",
           title="sparse x dense (300 x 784, batch 256)")
    measure.save_figure(fig, path, result["machine"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the bundled subset, tiny budgets")
    parser.add_argument("--epochs", type=int, default=None, help="baseline epochs (default: 8 for LeNet-300-100, 4 LeNet-5)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    configure_process()
    say = print
    full = measure.full_scale(args.quick)
    dataset = "fashion-mnist" if full else "mnist"
    X, y, Xt, yt = data.load_dataset(dataset, None)
    X, Xt = ((X - 0.5) / 0.5).astype(numpy.float32), ((Xt - 0.5) / 0.5).astype(numpy.float32)
    busy_before = cpu_busy()
    sparsities = [0.5, 0.9] if args.quick else [0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
    result = {"dataset": dataset, "models": {}, "sparsities": sparsities}
    folder = tempfile.mkdtemp(prefix="mpigrad-compression-")
    for name, epochs in (("lenet300", 8), ("lenet5", 4)):
        epochs = 1 if args.quick else (args.epochs or epochs)
        lr = LR[name] / 5                                              # fine-tuning: a fifth
        manual_seed(0)
        base = models.build(name)
        Xn, Xtn = inputs(base, X), inputs(base, Xt)
        steps = 20 if args.quick else len(Xn) // 128                  # one epoch of fine-tuning
        tic = time.perf_counter()
        fine_tune(base, Xn, y, epochs=epochs, lr=LR[name])
        baseline = accuracy(base, Xtn, yt)
        say(f"{name}: {epochs} epochs in {time.perf_counter() - tic:.0f} s, test accuracy {baseline:.4f}", flush=True)
        dense = copy.deepcopy(base)                    # the same fine-tuning, nothing pruned:
        fine_tune(dense, Xn, y, steps=steps, lr=lr)    # what a pruned model is compared with
        reference = accuracy(dense, Xtn, yt)
        say(f"  dense, fine-tuned the same way: {reference:.4f}", flush=True)
        entry = {"epochs": epochs, "baseline_accuracy": baseline, "dense_fine_tuned_accuracy": reference,
                 "pruning": pruning_curves(name, base, Xn, y, Xtn, yt, sparsities, steps, lr, say),
                 "int8": int8_runs(base, Xn, Xtn, yt, folder), "qat": qat_run(base, Xn, y, Xtn, yt, steps, lr),
                 "deep_compression": deep_compression(name, base, Xn, y, Xtn, yt, steps, lr, folder)}
        if name == "lenet300":
            entry["structured"] = structured(base, Xn, y, Xtn, yt, steps, lr)
        result["models"][name] = entry
        say(f"  int8 {entry['int8']}\n  qat {entry['qat']}\n  deep {entry['deep_compression']}", flush=True)
    result["sparse_kernel"] = time_sparse_vs_dense(repeats=5 if args.quick else 30)
    result["int8_matmul_seconds"] = time_against_float32(repeats=5 if args.quick else 30)   # 256 x 784 x 300
    info = measure.machine_info("python -m benchmarks.compression")
    result.update(machine=f"{info['cpu']}, {info['usable_cores']} cores, 1 process", machine_info=info,
                  cpu_busy_before=busy_before, cpu_busy_after=cpu_busy(), quick=args.quick)
    measure.save_json(result, args.out / "compression.json")
    plot(result, args.out / "compression.png")
    say(f"wrote {args.out / 'compression.json'} and compression.png")


if __name__ == "__main__":
    main()
