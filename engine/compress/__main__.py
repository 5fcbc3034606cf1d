"""Compress a trained model and say what it cost: accuracy and bytes before and after (MATH A7).

    python -m strategies.train --model lenet300 --epochs 5 --save-params lenet300.npz
    python -m engine.compress --params lenet300.npz --model lenet300 --prune 0.9 --fine-tune-epochs 1 \\
        --share-bits 5 --quantize --out compressed/

Stages, each optional and in this order, each on the previous one's model:

    prune       magnitude masks at --prune S (--scope layer | global), then --fine-tune-epochs
                of SGD with the masks kept; bytes: the weights as CSR (deep_compression.py (b))
    share       k-means on each layer's kept weights (--share-bits b), the centroids fine-tuned
                with their members' summed gradients; bytes: indices + centroids, then Huffman
                (deep_compression.py (c), (d))
    quantize    int8 post-training quantization, per-channel weights, calibrated on 8 training
                batches; bytes: the saved int8 file (quantization.save_quantized)

The float32 baseline is the model saved as a .npz (what --save-params writes). Every size is
measured from bytes written to --out (a temporary directory by default). Prints one table and,
with --json, writes it.
"""
import argparse
import json
import os
import tempfile

import numpy

from engine import Tensor, data, manual_seed, models
from engine.compress.deep_compression import deep_compression_bytes
from engine.compress.finetune import accuracy, fine_tune, inputs
from engine.compress.pruning import apply_masks, magnitude_masks
from engine.compress.quantization import quantize_model, save_quantized
from engine.compress.sharing import share_weights


def file_bytes(path, state):
    numpy.savez(path, **state)
    return os.path.getsize(path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m engine.compress", description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="a .npz written by --save-params")
    parser.add_argument("--model", choices=sorted(models.MODELS), required=True)
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--prune", type=float, default=0.0, help="fraction of the weights to mask")
    parser.add_argument("--scope", choices=["layer", "global"], default="layer")
    parser.add_argument("--fine-tune-epochs", type=int, default=0)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--share-bits", type=int, default=0, help="k-means weight sharing with 2^b centroids")
    parser.add_argument("--quantize", action="store_true", help="int8 post-training quantization")
    parser.add_argument("--out", default=None, help="directory for the compressed files (default: a temporary one)")
    parser.add_argument("--json", default=None, help="write the table here")
    args = parser.parse_args(argv)
    if not 0 <= args.prune < 1:
        parser.error(f"--prune must be in [0, 1), got {args.prune}")
    out = args.out or tempfile.mkdtemp(prefix="mpigrad-compress-")
    os.makedirs(out, exist_ok=True)
    manual_seed(0)
    model = models.build(args.model)
    with numpy.load(args.params) as saved:
        model.load_state_dict({name: saved[name] for name in saved.files})
    X, y, Xt, yt = data.load_dataset(args.dataset, args.data_path)
    X, Xt = inputs(model, ((X - 0.5) / 0.5).astype(numpy.float32)), inputs(model, ((Xt - 0.5) / 0.5).astype(numpy.float32))
    rows = [{"stage": "float32", "test_accuracy": accuracy(model, Xt, yt),
             "bytes": file_bytes(os.path.join(out, "float32.npz"), model.state_dict())}]
    masks, sharing = None, None
    if args.prune:
        pruning = apply_masks(model, magnitude_masks(model, args.prune, scope=args.scope))
        if args.fine_tune_epochs:
            fine_tune(model, X, y, epochs=args.fine_tune_epochs, lr=args.lr)
        masks = pruning.masks
        sizes = deep_compression_bytes(model.state_dict(), masks, None, directory=out)
        rows.append({"stage": f"pruned {args.prune:.0%} ({args.scope})", "test_accuracy": accuracy(model, Xt, yt),
                     "bytes": sizes["pruned"], "sparsity": pruning.sparsity()})
    if args.share_bits:
        sharing = share_weights(model, bits=args.share_bits, masks=masks)
        if args.fine_tune_epochs:
            fine_tune(model, X, y, epochs=args.fine_tune_epochs, lr=args.lr, sharing=sharing)
        sizes = deep_compression_bytes(model.state_dict(), masks or {n: p.data != 0 for n, p in sharing.params.items()},
                                       sharing, directory=out)
        acc = accuracy(model, Xt, yt)
        rows += [{"stage": f"shared, {args.share_bits} bits", "test_accuracy": acc, "bytes": sizes["shared"]},
                 {"stage": "+ Huffman", "test_accuracy": acc, "bytes": sizes["huffman"]}]
    if args.quantize:
        calibration = [Tensor(X[i:i + 128]) for i in range(0, 8 * 128, 128)]
        quantized = quantize_model(model, calibration, per_channel=True)
        path = os.path.join(out, "int8.npz")
        save_quantized(quantized, path)
        rows.append({"stage": "int8 (per-channel)", "test_accuracy": accuracy(quantized, Xt, yt),
                     "bytes": os.path.getsize(path)})
    base = rows[0]["bytes"]
    print(f"{'stage':<28}{'test acc':>9}{'bytes':>12}{'x smaller':>11}")
    for row in rows:
        row["ratio"] = base / row["bytes"]
        print(f"{row['stage']:<28}{row['test_accuracy']:>9.4f}{row['bytes']:>12,}{row['ratio']:>11.1f}")
    print(f"files in {out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
