"""One pruning mask on every replica (MATH A7 under A1): computed, agreed, kept.

    pruning = prune_replicas(model, comm, sparsity=0.9, scope="layer")   # in loop.setup, before
                                                                           # the optimiser exists

Every rank builds the same theta_0 (the seed), so magnitude masks computed on each rank are
the same; this is checked, not assumed: each rank hashes its masks (SHA-256 of the packed
bits, in parameter order) and the hashes are gathered and compared over the metrics
communicator. A rank whose mask differs would train a different model from its first step;
here it is one error naming the ranks. Then data parallelism with masked weights is the
single process with the same masks: the all-reduced gradient is the same on every rank, the
masked entries' gradients are zeroed on every rank by the mask's hooks, so they stay zero
through SGD, momentum and Adam (tests/test_compression_dp.py: == single, 1e-10 float64).

Cost: one gather and one broadcast of a 64-character hash, once per run.
"""
import hashlib

import numpy

from engine.compress.pruning import apply_masks, magnitude_masks
from strategies.messages import broadcast_json, gather_json


def masks_sha256(masks):
    """SHA-256 of the masks' bits in name order: equal masks, and only those, agree."""
    digest = hashlib.sha256()
    for name in sorted(masks):
        digest.update(name.encode())
        digest.update(numpy.packbits(numpy.asarray(masks[name], bool)).tobytes())
    return digest.hexdigest()


def agree(comm, masks):
    """Raise on every rank unless every rank of ``comm`` holds the same masks."""
    hashes = gather_json(comm, masks_sha256(masks))
    differ = None
    if comm.rank == 0:
        differ = [rank for rank, h in enumerate(hashes) if h != hashes[0]]
    differ = broadcast_json(comm, differ)
    if differ:
        raise ValueError(f"rank {comm.rank} of {comm.size}: the pruning masks of ranks {differ} differ "
                         "from rank 0's: the replicas would train different models")


def prune_replicas(model, comm, sparsity, scope="layer"):
    """Magnitude masks at ``sparsity`` on ``model`` (the same on every rank, checked over
    ``comm``), applied so that pruned weights stay zero; returns the Pruning."""
    masks = magnitude_masks(model, sparsity, scope=scope)
    agree(comm, masks)
    return apply_masks(model, masks)
