"""The bytes of a model after each stage of Deep Compression (MATH A7; Han et al., ICLR 2016):

    (a) float32      every parameter, 4 bytes each
    (b) pruned       the masked weights as CSR: float32 values, column indices and row
                     pointers in the narrowest unsigned dtype that holds them (uint16 for 784
                     columns; Han et al. store 4-bit index differences instead, below in (d))
    (c) shared       the same CSR structure, each value replaced by its b-bit centroid index
                     (packed, b bits a weight) plus 2^b float32 centroids per layer
    (d) huffman      the centroid indices Huffman-coded, and the positions as the gaps
                     g_t = p_t - p_{t-1} - 1 (zeros skipped between kept weights, row-major),
                     Huffman-coded too: no row pointers, no column indices, no 4-bit cap
                     (Han et al.'s fixed 4-bit gaps need filler zeros; a variable-length code
                     does not)

Every stage is built as the byte strings it would write (each array's shape as uint32s, then
its payload; Huffman streams with their n_bits and canonical table, huffman.py), and measured
by their length, or by the file sizes when given a ``directory``. Parameters that are neither
masked nor shared (the biases) stay float32 in every stage. The 784-300-100-10 MLP, its
weights pruned to 10 % by magnitude and shared at 5 bits: 6.6x (b: a kept weight costs 4 + 2
bytes, so 10 % kept is not 10x), 15x (c), 39x (d) (tests/test_compress_sparse_sharing.py;
Han et al. report 40x for LeNet-300-100, trained and with 8 % kept).
"""
import os

import numpy

from engine.compress import huffman


def _narrowest(top):
    return next(d for d in (numpy.uint8, numpy.uint16, numpy.uint32, numpy.uint64)
                if top <= numpy.iinfo(d).max)


def _array(a):
    a = numpy.ascontiguousarray(a)
    return numpy.array(a.shape, numpy.uint32).tobytes() + a.tobytes()


def _csr_structure(mask):
    """Row pointers and column indices of a mask seen as (rows, rest), narrowest dtypes."""
    mask = mask.reshape(mask.shape[0], -1)
    rows, cols = numpy.nonzero(mask)
    indptr = numpy.concatenate([[0], numpy.cumsum(numpy.bincount(rows, minlength=mask.shape[0]))])
    return [_array(indptr.astype(_narrowest(indptr[-1]))),
            _array(cols.astype(_narrowest(max(mask.shape[1] - 1, 0))))]


def _packed(indices, bits):
    """Each index in ``bits`` bits, most significant first, padded to whole bytes."""
    unpacked = (indices[:, None].astype(numpy.uint8) >> numpy.arange(bits - 1, -1, -1)) & 1
    return _array(numpy.packbits(unpacked.ravel()))


def _stream(data, n_bits, table):
    return data + numpy.uint32(n_bits).tobytes() + huffman.table_bytes(table)


def position_gaps(mask):
    """g_t = p_t - p_{t-1} - 1 with p_{-1} = -1: the zeros before each kept weight, row-major."""
    positions = numpy.flatnonzero(numpy.asarray(mask).ravel())
    return numpy.diff(positions, prepend=-1) - 1


def huffman_streams(sharing, name):
    """(indices stream, gaps stream) of one shared weight, each (bytes, n_bits, table)."""
    return (huffman.encode(sharing.nonzero_indices(name)),
            huffman.encode(position_gaps(sharing.masks[name])))


def stage_blobs(model_state, masks, sharing):
    """{stage: [bytes, ...]}: what each stage stores, parameter by parameter. ``sharing`` may
    be None (pruning only: the shared and Huffman stages are then the pruned one)."""
    masks = masks or {}
    shared_params = sharing.params if sharing is not None else {}
    stages = {"float32": [], "pruned": [], "shared": [], "huffman": []}
    for name, value in model_state.items():
        w = numpy.asarray(value, numpy.float32)
        dense = _array(w)
        stages["float32"].append(dense)
        if name in shared_params:
            mask = sharing.masks[name]
        elif name in masks:
            mask = numpy.asarray(masks[name], bool)
        else:
            for stage in ("pruned", "shared", "huffman"):
                stages[stage].append(dense)
            continue
        structure = _csr_structure(mask)
        pruned = structure + [_array(w[mask])]
        stages["pruned"].extend(pruned)
        if name not in shared_params:
            stages["shared"].extend(pruned)
            stages["huffman"].extend(pruned)
            continue
        codebook = _array(sharing.centroids[name].astype(numpy.float32))
        stages["shared"].extend(structure + [_packed(sharing.nonzero_indices(name),
                                                     sharing.bits[name]), codebook])
        shape = numpy.array(w.shape, numpy.uint32).tobytes()
        stages["huffman"].extend([shape, codebook] + [_stream(*s) for s in huffman_streams(sharing, name)])
    return stages


def deep_compression_bytes(model_state, masks, sharing, directory=None):
    """{stage: bytes} for the stages (a)-(d) above, and {stage}_ratio = float32 bytes / those.
    ``model_state``: {name: array} (a state_dict); ``masks``: {name: bool} of the pruned
    weights; ``sharing``: a Sharing (sharing.py) over some of them. With ``directory``, each
    stage is written to {directory}/{stage}.bin and the file's size is what is reported."""
    out = {}
    for stage, blobs in stage_blobs(model_state, masks, sharing).items():
        raw = b"".join(blobs)
        if directory is not None:
            path = os.path.join(directory, f"{stage}.bin")
            with open(path, "wb") as f:
                f.write(raw)
            out[stage] = os.path.getsize(path)
        else:
            out[stage] = len(raw)
    for stage in ("pruned", "shared", "huffman"):
        out[f"{stage}_ratio"] = out["float32"] / out[stage]
    return out
