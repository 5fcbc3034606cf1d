"""Bucketed all-reduce: many small arrays reduced as a few large messages (MATH A6).

A model's gradients are many arrays, some tiny (biases). All-reducing each on its own pays
the latency term once per array: k arrays of n/k bytes cost about

    k * T(n/k)  =  k * 2 (p - 1) alpha  +  2 (p - 1)/p n beta          (ring)

Copying them into a few flat buckets of at most ``bucket_bytes`` each and all-reducing each
bucket pays it only ceil(n / bucket_bytes) times, for the price of one copy in and one out:

    arrays   [ w1 (3x4) ][ b1 (4) ][ w2 (4x2) ][ b2 (2) ]      bucket_bytes = 128, float64
    buckets  [ w1 w1 ... w1 b1 b1 b1 b1 ]  [ w2 ... w2 b2 b2 ]   (96 + 32 B, 64 + 16 B)

Arrays are packed in the order given (data parallelism will pass gradients in the order
backward produces them, so the first bucket can start early), a bucket never mixes dtypes,
and an array larger than ``bucket_bytes`` gets a bucket of its own.
"""
from engine.backend import array_module

from collectives.allreduce import allreduce
from collectives.guard import as_array
from collectives.reduction import Op


def plan_buckets(arrays, bucket_bytes):
    """Lists of indices into ``arrays``, one list per bucket, in order (see module docstring)."""
    buckets, current, current_bytes = [], [], 0
    for index, array in enumerate(arrays):
        fits = current and array.dtype == arrays[current[0]].dtype \
            and current_bytes + array.nbytes <= bucket_bytes
        if current and not fits:
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += array.nbytes
    if current:
        buckets.append(current)
    return buckets


def bucketed_allreduce(comm, arrays, bucket_bytes=1 << 20, algorithm="ring", op=Op.SUM, *,
                       inplace=False, check=True):
    """All-reduce every array in ``arrays``; returns the list of results in the same order.

    ``inplace=True`` writes each result into its input array (and returns the inputs);
    otherwise the inputs are untouched and the results are new arrays (views into each
    bucket's flat buffer). Every rank must pass arrays of the same shapes and dtypes.
    """
    if not isinstance(arrays, (list, tuple)):
        raise TypeError("bucketed_allreduce: expected a list of arrays, "
                        f"got {type(arrays).__name__}")
    for array in arrays:   # types only: allreduce converts byte order, and inplace needs the inputs
        as_array(array, "bucketed_allreduce")
    results = list(arrays) if inplace else [None] * len(arrays)
    for bucket in plan_buckets(arrays, bucket_bytes):
        xp = array_module(arrays[bucket[0]])
        flat = xp.concatenate([arrays[i].reshape(-1) for i in bucket])   # (sum of sizes,)
        flat = allreduce(comm, flat, algorithm, op, out=flat, check=check)
        offset = 0
        for i in bucket:
            piece = flat[offset:offset + arrays[i].size].reshape(arrays[i].shape)
            offset += arrays[i].size
            if inplace:
                arrays[i][...] = piece
            else:
                results[i] = piece
    return results
