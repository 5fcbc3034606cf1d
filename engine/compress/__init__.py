"""Model compression (MATH A7): fewer weights, fewer bits, fewer bytes.

    pruning = apply_masks(model, magnitude_masks(model, 0.9))      # 90 % of the weights zero
    smaller, kept = prune_neurons(model, fraction=0.5)             # a really smaller Sequential
    int8_model = quantize_model(model, calibration_batches)        # int8 weights, 4x smaller
    sharing = share_weights(model, bits=5, masks=pruning.masks)    # Deep Compression's step 2

    python -m engine.compress --params model.npz --model lenet300 --prune 0.9 --quantize

Table of contents (one concept per module; docs/compression.md is the lecture):

    pruning.py           magnitude masks (per layer, global), kept through every optimiser;
                         the gradual schedule s_t (Zhu & Gupta 2017); iterative pruning
    structured.py        neurons of a Linear, channels of a Conv2d: a smaller model, equal outputs
    sparse.py            CSR weights and a Numba sparse x dense kernel (inference)
    quantization.py      observers, int8 quantize / dequantize, QuantizedLinear, post-training
    int8.py              the int8 matmul kernel (int32 accumulation)
    qat.py               fake-quant with the straight-through estimator; conversion to int8
    sharing.py           k-means weight sharing, centroids fine-tuned by summed gradients
    huffman.py           canonical Huffman coding of the indices
    deep_compression.py  the bytes of each stage: float32, pruned, shared, Huffman-coded
    __main__.py          the command line: compress a --save-params file, before and after
"""
from engine.compress.deep_compression import deep_compression_bytes
from engine.compress.pruning import Pruning, apply_masks, gradual_sparsity, magnitude_masks, prune_iteratively
from engine.compress.qat import convert, prepare_qat
from engine.compress.quantization import QuantizedLinear, load_quantized, quantize_model, save_quantized
from engine.compress.sharing import Sharing, share_weights
from engine.compress.sparse import CSR, SparseLinear
from engine.compress.structured import prune_channels, prune_neurons

__all__ = ["CSR", "Pruning", "QuantizedLinear", "Sharing", "SparseLinear", "apply_masks", "convert",
           "deep_compression_bytes", "gradual_sparsity", "load_quantized", "magnitude_masks",
           "prepare_qat", "prune_channels", "prune_iteratively", "prune_neurons", "quantize_model",
           "save_quantized", "share_weights"]
