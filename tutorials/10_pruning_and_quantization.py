"""Tutorial 10: pruning and quantization - LeNet-300-100 made about 40x smaller (MATH A7).

    python tutorials/10_pruning_and_quantization.py
    python tutorials/10_pruning_and_quantization.py --quick     # fewer epochs and sparsities: ~15 s

LeNet-300-100 (784-300-100-10, ReLU, 266,610 parameters; ``models.build("lenet300")``) is
trained on the bundled MNIST subset (4,000 / 1,000 images, pixels (x - 0.5) / 0.5), SGD
momentum 0.9, lr 0.01, batch 64, 3 epochs (--quick: 2), seed 0. Then (engine/compress/):

  1. unstructured magnitude pruning, w <- w [|w| >= tau]: the threshold by hand in NumPy for
     the first layer equals ``magnitude_masks``; one-shot pruning to 50/80/90/95 % with and
     without one epoch of fine-tuning (accuracy against % kept); the gradual schedule
     s_t = s_f + (s_i - s_f)(1 - t/T)^3 (Zhu & Gupta); the zeros survive momentum steps
     (``apply_masks``: a gradient hook, and the optimiser's momentum zeroed there);
  2. structured pruning: ``prune_neurons`` removes half of each hidden layer (784-150-50-10),
     and the smaller model computes what the masked same-shape model does (float64, 1e-12);
  3. int8 post-training quantization, weights per channel: q = clip(round(x/s) + z), every
     round-trip error |x - s(q - z)| <= s/2; accuracy before and after; the file on disk
     float32 against int8 (about 4x); ``int8_matmul`` equal to the integer NumPy product;
     quantization-aware training (``prepare_qat``, a few steps, ``convert``);
  4. Deep Compression (Han et al., 2016): prune 90 % and fine-tune, share the weights of each
     layer in 32 k-means centroids (5 bits) and fine-tune the centroids (dL/dc_k = the sum of
     the members' dL/dw), Huffman-code indices and gaps: the bytes of each stage
     (``deep_compression_bytes``) and the final accuracy;
  5. ends with PASS or FAIL: the exact things (masks, zeros, equalities, bytes) exactly, the
     accuracies with generous margins (90 % pruned and fine-tuned, QAT, and the Deep Compression
     model within 2 points of the dense model, 3 with --quick; int8 PTQ within 1).
Notebook: tutorials/notebooks/10_pruning_and_quantization.ipynb (the masks drawn, the plots).
"""
import argparse
import copy
import os
import sys
import tempfile
import time

import numpy as np

from engine import Tensor, data, manual_seed, models, no_grad, optim
import engine.functional as F
from engine.compress.deep_compression import deep_compression_bytes
from engine.compress.int8 import int8_matmul
from engine.compress.pruning import (apply_masks, gradual_sparsity, magnitude_masks, prunable,
                                    prune_iteratively)
from engine.compress.qat import convert, prepare_qat
from engine.compress.quantization import (dequantize, load_quantized, model_bytes, quantize,
                                          quantize_model, save_quantized)
from engine.compress.sharing import share_weights
from engine.compress.structured import masked_equivalent, prune_neurons
from engine.process import configure_process
from strategies.parameters import cast_model

X_train, y_train, X_test, y_test = data.load_mnist()                   # bundled 4,000 / 1,000
X_train, X_test = (X_train - 0.5) / 0.5, (X_test - 0.5) / 0.5          # float32 in [-1, 1]
LR, BATCH = 0.02, 64


def accuracy(model, X=None, y=None):
    """Fraction of the test images whose largest logit is the label."""
    X, y = (X_test, y_test) if X is None else (X, y)
    model.eval()
    with no_grad():
        logits = model(Tensor(X))
    model.train()
    return float((np.asarray(logits.numpy()).argmax(axis=1) == y).mean())


def train(model, epochs=1, steps=None, seed=0, opt=None, params=None):
    """SGD momentum 0.9 on cross-entropy for ``epochs`` epochs (or the first ``steps`` batches);
    returns the optimiser (its momentum buffers are what section 1 checks)."""
    opt = opt or optim.SGD(params or model.parameters(), lr=LR, momentum=0.9)
    loader = data.DataLoader(X_train, y_train, batch_size=BATCH, shuffle=True, seed=seed)
    done = 0
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if steps is not None and done == steps:
                return opt
    return opt


def main(argv=None):
    configure_process()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, 3 sparsities, fewer steps")
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else 10
    sparsities = (0.5, 0.9, 0.95) if args.quick else (0.5, 0.8, 0.9, 0.95)
    margin = 0.03 if args.quick else 0.02       # accuracy points allowed (--quick: less trained, noisier)
    checks, start = {}, time.perf_counter()

    manual_seed(0)
    dense = models.build("lenet300")
    n_params = sum(p.numel() for p in dense.parameters())
    dense_opt = train(dense, epochs)
    acc_dense = accuracy(dense)
    print(f"LeNet-300-100, {n_params:,} parameters, {epochs} epochs: test accuracy {acc_dense:.3f}")

    # -- 1. unstructured magnitude pruning ------------------------------------------------------
    print("\n1. magnitude pruning: w <- w [|w| >= tau], tau the k-th smallest |w|, k = s * n")
    W = dense[0].weight.data                                            # (300, 784), the first layer
    k = round(0.9 * W.size)
    tau = np.sort(np.abs(W), axis=None)[k]                              # the smallest kept |w|
    by_hand = np.abs(W) >= tau
    masks = magnitude_masks(dense, 0.9)
    print(f"  layer 0 at 90 %: tau = {tau:.4f}, keeps {by_hand.sum():,} of {W.size:,}; "
          f"same mask as magnitude_masks: {np.array_equal(by_hand, masks['0.weight'])}")
    checks["the mask by hand (|w| >= tau) == magnitude_masks, layer 0 at 90 %"] = \
        np.array_equal(by_hand, masks["0.weight"])

    results, finetuned = {}, {}
    print(f"  {'% kept':>7} | {'one-shot':>8} | {'+1 epoch':>8} | sparsity after fine-tune")
    for s in sparsities:
        model = copy.deepcopy(dense)
        pruning = apply_masks(model, magnitude_masks(model, s))
        one_shot = accuracy(model)
        opt = train(model, 1, seed=1)                                   # momentum SGD, the hooks on
        tuned = accuracy(model)
        results[s] = (one_shot, tuned)
        finetuned[s] = (model, pruning, opt)
        print(f"  {100 * (1 - s):>6.0f}% | {one_shot:>8.3f} | {tuned:>8.3f} | {pruning.sparsity():.4f}")
        zeros = all(np.all(p.data[~pruning.masks[n]] == 0) for n, p in prunable(model))
        momentum = all(np.all(st["momentum_buffer"][~pruning.masks[n]] == 0)
                       for (n, p), st in zip(model.named_parameters(), opt.state)
                       if n in pruning.masks and "momentum_buffer" in st)
        checks[f"{s:.0%} pruned: every pruned weight still exactly 0 after an epoch of momentum SGD"] = \
            zeros and momentum and abs(pruning.sparsity() - s) < 1e-3

    # Pruning an optimiser that has stepped: its momentum would move the zeros again.
    model, opt = copy.deepcopy(dense), copy.deepcopy(dense_opt)
    opt.params = list(model.parameters())                               # the copy's parameters
    kept = magnitude_masks(model, 0.9)
    for n, p in prunable(model):
        p.data *= kept[n]                                               # w * m, and nothing else
    train(model, steps=1, opt=opt, seed=2)
    moved = sum(int((p.data[~kept[n]] != 0).sum()) for n, p in prunable(model))
    model, opt = copy.deepcopy(dense), copy.deepcopy(dense_opt)
    opt.params = list(model.parameters())
    pruning = apply_masks(model, kept, optimizer=opt)                   # momentum zeroed there too
    train(model, steps=20, opt=opt, seed=2)
    kept_zero = sum(int((p.data[~kept[n]] != 0).sum()) for n, p in prunable(model))
    print(f"  with the dense run's momentum: w * m alone, one step later {moved:,} pruned weights "
          f"are nonzero again; apply_masks(..., optimizer=opt), 20 steps later: {kept_zero}")
    checks["apply_masks with a stepped optimiser: 0 pruned weights move in 20 steps"] = \
        moved > 0 and kept_zero == 0

    T = 10
    schedule = [gradual_sparsity(t, T, 0.9) for t in range(T + 1)]
    print("  gradual schedule s_t = s_f + (s_i - s_f)(1 - t/T)^3, s_f = 0.9, T = 10:")
    print("   ", " ".join(f"{s:.3f}" for s in schedule))
    checks["gradual_sparsity: s_0 = 0, s_T = 0.9, non-decreasing, == the formula"] = (
        schedule[0] == 0 and schedule[-1] == 0.9 and all(a <= b for a, b in zip(schedule, schedule[1:]))
        and all(abs(s - (0.9 - 0.9 * (1 - t / T) ** 3)) < 1e-15 for t, s in enumerate(schedule)))
    # The same 95 % reached gradually: 5 rounds along s_t, 8 steps after each of the first four
    # and 31 after the last (63 steps, one epoch in all, as the one-shot fine-tune).
    model = copy.deepcopy(dense)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    rounds = [gradual_sparsity(t, 5, 0.95) for t in range(1, 6)]
    pruning = prune_iteratively(model, rounds, lambda k, _: train(model, steps=8 if k < 4 else 31, opt=opt, seed=10 + k),
                                optimizer=opt)
    acc_gradual = accuracy(model)
    print(f"  95 % in 5 rounds ({', '.join(f'{s:.3f}' for s in rounds)}), 8 + 8 + 8 + 8 + 31 steps: accuracy "
          f"{acc_gradual:.3f} (one-shot 95 % + 1 epoch: {results[0.95][1]:.3f})")
    checks["prune_iteratively to 95 %: sparsity exactly 0.95 at the end"] = abs(pruning.sparsity() - 0.95) < 1e-3
    checks[f"90 % pruned + 1 epoch within {margin:.0%} of dense ({results[0.9][1]:.3f} vs {acc_dense:.3f})"] = \
        results[0.9][1] >= acc_dense - margin

    # -- 2. structured pruning ------------------------------------------------------------------
    print("\n2. structured pruning: prune_neurons(model, fraction=0.5) removes rows and columns")
    smaller, kept_rows = prune_neurons(dense, fraction=0.5)
    masked = masked_equivalent(dense, kept_rows)
    x64 = X_test.astype(np.float64)
    with no_grad():
        diff = float(np.abs(cast_model(copy.deepcopy(smaller), np.float64)(Tensor(x64)).numpy()
                            - cast_model(copy.deepcopy(masked), np.float64)(Tensor(x64)).numpy()).max())
    shapes = " -> ".join(str(m.weight.shape) for m in smaller if hasattr(m, "weight"))
    small_params = sum(p.numel() for p in smaller.parameters())
    acc_small = accuracy(smaller)
    train(smaller, 1, seed=1)
    acc_small_tuned = accuracy(smaller)
    print(f"  weights {shapes}: {small_params:,} parameters ({model_bytes(smaller):,} B float32, "
          f"{small_params / n_params:.1%} of dense)")
    print(f"  smaller model vs masked same-shape model (float64): max |difference| {diff:.1e}")
    print(f"  accuracy {acc_small:.3f} as cut, {acc_small_tuned:.3f} after 1 epoch")
    checks["prune_neurons 50 %: smaller model == masked model (float64, 1e-12)"] = diff <= 1e-12
    checks["prune_neurons 50 %: 125,810 parameters (784-150-50-10)"] = small_params == 125_810

    # -- 3. int8 quantization -------------------------------------------------------------------
    print("\n3. int8: q = clip(round(x / s) + z, -128, 127), x ~ s (q - z)")
    calibration = [X_train[i:i + 256] for i in range(0, 1024, 256)]
    qmodel = quantize_model(dense, calibration, per_channel=True)
    ql = qmodel[0]
    W64 = np.asarray(W, np.float64)
    s = ql.weight_scale.astype(np.float64)[:, None]
    err = np.abs(W64 - s * ql.weight)                                   # z = 0: symmetric weights
    print(f"  layer 0 per channel: scales {s.min():.2e} .. {s.max():.2e}; round-trip error / (s/2): "
          f"max {(err / (s / 2)).max():.4f}")
    checks["int8 round trip: every |w - s q| <= s/2 (layer 0, per channel)"] = bool(np.all(err <= s / 2 * (1 + 1e-6)))
    same = np.array_equal(quantize(W, ql.weight_scale, 0, axis=0), ql.weight) and \
        np.allclose(dequantize(ql.weight, ql.weight_scale, 0, axis=0), W, atol=float(s.max()) / 2 + 1e-7)
    checks["quantize / dequantize agree with QuantizedLinear's weights"] = same
    acc_int8 = accuracy(qmodel)
    print(f"  accuracy float32 {acc_dense:.3f}, int8 {acc_int8:.3f}")
    checks[f"int8 PTQ within 1 point of float32 ({acc_int8:.3f} vs {acc_dense:.3f})"] = acc_int8 >= acc_dense - 0.01
    with tempfile.TemporaryDirectory() as tmp:
        f32, i8 = os.path.join(tmp, "float32.npz"), os.path.join(tmp, "int8.npz")
        save_quantized(dense, f32)
        save_quantized(qmodel, i8)
        b32, b8 = os.path.getsize(f32), os.path.getsize(i8)
        with no_grad():
            reloaded = np.array_equal(load_quantized(i8)(Tensor(X_test)).numpy(), qmodel(Tensor(X_test)).numpy())
    print(f"  on disk: float32 {b32:,} B, int8 {b8:,} B ({b32 / b8:.2f}x); in memory "
          f"{model_bytes(dense):,} B and {model_bytes(qmodel):,} B; reloaded computes the same: {reloaded}")
    checks[f"int8 file 3.5x-4x smaller than float32 ({b32 / b8:.2f}x), reloads exactly"] = \
        3.5 <= b32 / b8 <= 4.0 and reloaded
    qx = quantize(X_test[:256], ql.input_scale, ql.input_zero_point)    # (256, 784) int8
    acc32 = int8_matmul(qx, ql._weight_t)
    exact = np.array_equal(acc32, qx.astype(np.int64) @ ql._weight_t.astype(np.int64))
    print(f"  int8_matmul (256, 784) x (784, 300) -> int32, == the integer NumPy product: {exact}")
    checks["int8_matmul == the int64 NumPy product, exactly"] = exact and acc32.dtype == np.int32

    qat = prepare_qat(dense)
    train(qat, steps=30 if args.quick else 60, seed=3)
    qat.eval()
    acc_qat_fake = accuracy(qat)
    converted = convert(qat)
    acc_qat = accuracy(converted)
    print(f"  QAT, {30 if args.quick else 60} steps: fake-quantized {acc_qat_fake:.3f}, "
          f"converted to int8 {acc_qat:.3f}")
    checks[f"QAT then convert within {margin:.0%} of float32 ({acc_qat:.3f} vs {acc_dense:.3f})"] = \
        acc_qat >= acc_dense - margin

    # -- 4. Deep Compression --------------------------------------------------------------------
    print("\n4. Deep Compression: prune 90 % + fine-tune, share 5 bits + fine-tune, Huffman")
    model, pruning, _ = finetuned[0.9]
    sharing = share_weights(model, bits=5, masks=pruning.masks)
    acc_shared = accuracy(model)
    biases = optim.SGD([p for n, p in model.named_parameters() if n.endswith("bias")], lr=LR, momentum=0.9)
    loader = data.DataLoader(X_train, y_train, batch_size=BATCH, shuffle=True, seed=4)
    steps = 30 if args.quick else 60
    for step, (xb, yb) in zip(range(steps), loader):
        loss = F.cross_entropy(model(xb), yb)
        model.zero_grad()
        loss.backward()
        biases.step()                                                   # the biases, as usual
        sharing.fine_tune_step(lr=1e-3)                                  # c_k -= lr sum of members' grads
    acc_final = accuracy(model)
    distinct = max(len(np.unique(p.data[sharing.masks[n]])) for n, p in sharing.params.items())
    zeros = all(np.all(p.data[~sharing.masks[n]] == 0) for n, p in sharing.params.items())
    sizes = deep_compression_bytes(model.state_dict(), pruning.masks, sharing)
    print(f"  accuracy: pruned {results[0.9][1]:.3f}, shared {acc_shared:.3f}, "
          f"centroids fine-tuned ({steps} steps) {acc_final:.3f}")
    for stage in ("float32", "pruned", "shared", "huffman"):
        ratio = f"{sizes[stage + '_ratio']:5.1f}x" if stage != "float32" else "  1.0x"
        print(f"  {stage:>8}: {sizes[stage]:>9,} B  {ratio}")
    checks["after centroid fine-tuning: <= 32 distinct values a layer, pruned weights 0"] = distinct <= 32 and zeros
    checks["float32 > pruned > shared > huffman bytes"] = \
        sizes["float32"] > sizes["pruned"] > sizes["shared"] > sizes["huffman"]
    checks[f"Deep Compression at least 25x ({sizes['huffman_ratio']:.1f}x)"] = sizes["huffman_ratio"] >= 25
    checks[f"Deep Compression within {margin:.0%} of dense ({acc_final:.3f} vs {acc_dense:.3f})"] = \
        acc_final >= acc_dense - margin

    print(f"\nchecks ({time.perf_counter() - start:.1f} s)")
    for what, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'}  {what}")
    passed = all(checks.values())
    print("PASS" if passed else "FAIL")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
