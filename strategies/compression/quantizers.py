"""Quantizers: fewer bits per element, every element sent (MATH A6: compress what is sent).

    fp16   g -> float16(g)                                   ring all-reduce SUM in float16
           bytes/rank  2 (p-1)/p * n * 2                     (half of float32's ring bytes)
    qsgd   Q(g_i) = ||g||_2 sign(g_i) xi_i / s               (Alistarh et al. 2017)
           xi_i = l + 1 with probability r - l, else l;  r = s |g_i| / ||g||_2,  l = floor(r)
           so E[xi_i] = r and E[Q(g)] = g (unbiased);  E||Q(g) - g||^2 <= min(n/s^2, sqrt(n)/s) ||g||^2
           payload: ||g|| (1 element of g's dtype) + n signed levels (int8 for s <= 127, else int16)
           bytes/rank  (p-1) * (n * level_bytes + itemsize)  all-gathered (norms differ per rank)
    sign   S(g) = (||g||_1 / n) sign(g)                      (1-bit SGD, Seide et al. 2014; the
           scaled sign of signSGD / EF-SGD, Karimireddy et al. 2019); sign(0) taken as +
           payload: packbits(g >= 0) (ceil(n/8) bytes) + the scale (1 element)
           bytes/rank  (p-1) * (ceil(n/8) + itemsize)        all-gathered (scales differ per rank)

fp16 overflow: a float16 sum of p gradients can pass 65504 where no single one does, so each
rank sends float16(g / p) and the ring SUM of those is the mean - every partial sum is at most
max_r |g_r| in size. Values beyond float16's range saturate (not inf): to +-65504 in the
payload, to +-0.99 * 65504 / p before the sum (a margin for the rounding of the partial sums).
Gradients below 6e-8 flush to zero (no loss scaling here). The local decode (error feedback)
is float16(g) widened back; the exchange's float16(float16(g) / p) adds one more rounding,
relative 2^-11 (~5e-4) per element.
"""
import math

import numpy

import collectives
from strategies.compression.base import Compressor

HALF_MAX = float(numpy.finfo(numpy.float16).max)   # 65504


def to_half(x):
    """float16(x) saturated at +-65504 instead of overflowing to inf."""
    return numpy.clip(x, -HALF_MAX, HALF_MAX).astype(numpy.float16)


class FP16(Compressor):
    name = "fp16"

    def __init__(self):
        self.dtype = None

    def compress(self, g):
        self.dtype = g.dtype
        return (to_half(g),)

    def decompress(self, payload, n):
        return payload[0].reshape(n).astype(self.dtype)

    def transport(self, comm, payload, n):
        # divide BEFORE the sum; clip 1 % under 65504 / p so p rounded partial sums stay finite
        limit = 0.99 * HALF_MAX / comm.size
        scaled = numpy.clip(payload[0].astype(numpy.float32) / comm.size, -limit, limit).astype(numpy.float16)
        total = collectives.allreduce(comm, scaled, "ring", "sum", check=False)
        return total.astype(self.dtype)

    def bytes_sent(self, p, n, itemsize):
        return 2 * (p - 1) / p * n * 2


class QSGD(Compressor):
    """``levels``: s >= 1. ``seed``: the RNG of rank r is default_rng([seed, r]) once bound to a
    communicator (``exchange``), default_rng(seed) before - reproducible runs, independent
    rounding across ranks (so the p errors average down)."""
    name = "qsgd"
    state_attributes = ("rng", "rank")

    def __init__(self, levels=8, seed=0):
        if not (isinstance(levels, int) and levels >= 1):
            raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
        if levels > 32767:
            raise ValueError(f"levels must be <= 32767 (int16 levels), got {levels!r}")
        self.levels, self.seed = levels, seed
        self.level_dtype = numpy.int8 if levels <= 127 else numpy.int16
        self.rng, self.rank = numpy.random.default_rng(seed), None

    def bind(self, comm):
        if self.rank != comm.rank:
            self.rank, self.rng = comm.rank, numpy.random.default_rng([self.seed, comm.rank])

    def compress(self, g):
        norm = numpy.sqrt(numpy.dot(g, g))
        if norm == 0:
            return numpy.array([0], g.dtype), numpy.zeros(g.size, self.level_dtype)
        r = numpy.abs(g) / norm * self.levels                     # in [0, s]
        low = numpy.floor(r)
        xi = low + (self.rng.random(g.size) < r - low)            # P(round up) = r - l: unbiased
        signed = numpy.where(g < 0, -xi, xi).astype(self.level_dtype)
        return numpy.array([norm], g.dtype), signed

    def decompress(self, payload, n):
        norm, signed = payload
        return norm[0] * (signed.reshape(n).astype(norm.dtype) / self.levels)

    def bytes_sent(self, p, n, itemsize):
        return (p - 1) * (n * numpy.dtype(self.level_dtype).itemsize + itemsize)


class Sign(Compressor):
    name = "sign"

    def compress(self, g):
        scale = numpy.abs(g).sum() / g.size                         # ||g||_1 / n
        return numpy.array([scale], g.dtype), numpy.packbits(g >= 0)

    def decompress(self, payload, n):
        scale, bits = payload
        signs = numpy.unpackbits(bits, count=n).astype(scale.dtype) * 2 - 1   # {0,1} -> {-1,+1}
        return scale[0] * signs

    def bytes_sent(self, p, n, itemsize):
        return (p - 1) * (math.ceil(n / 8) + itemsize)
