"""Sparsifiers: send k of the n elements, as (values, int32 indices) (MATH A6).

    k = max(1, round(ratio * n))                     (ratio: the density, e.g. 0.01)
    topk      the k largest |g_i|                    (Aji & Heafield 2017; Lin et al. 2018)
    randomk   k indices drawn without replacement    (Stich et al. 2018); unscaled, so biased
              like top-k: run it with error feedback (the default in ``build``)

Transport: each rank's index set is its own, so the payloads cannot be summed on the way
(no reduce-scatter); they are all-gathered, fixed size (k values, k indices) per rank, and
every rank scatter-adds all p of them in rank order and divides by p:

    bytes/rank  (p-1) * k * (itemsize + 4)           float32: 8 (p-1) k;  the ring's 8 (p-1)/p n
                                                     wins when k > n / p

randomk's indices: rank r draws from default_rng([seed, r]) (default_rng(seed) before it is
bound to a communicator), one draw per step - different on every rank, reproducible per run.
(Shared indices would let the values go by all-reduce alone; not done here.)

DGC (Deep Gradient Compression, Lin et al. 2018), options on topk:
  momentum_correction = m > 0: the momentum moves into the compressor, per element,
      u <- m u + g,   v <- v + u,   send topk(v),   u_i = v_i = 0 for the sent i
  so the unsent elements keep accumulating their velocity, as local momentum SGD would;
  v is the residual (error feedback built in), and the optimiser must run WITHOUT momentum.
  warmup_steps = W: the density grows exponentially from 25 % to ratio over the first W steps,
      d_t = 0.25 (ratio / 0.25)^(t / W)  for t < W,   then ratio,
  so early, fast-changing gradients are sent densely. bytes_sent() is the next step's.
"""
import numpy

from strategies.compression.base import Compressor, check_ratio

WARMUP_START = 0.25


def k_of(ratio, n):
    """Elements sent out of n at density ``ratio``: at least one, at most n."""
    return min(n, max(1, round(ratio * n)))


def scatter_mean(payloads, n, dtype):
    """Dense (n,) from sparse (values, indices) pairs: the sum in order (indices unique per rank)."""
    out = numpy.zeros(n, dtype)
    for values, indices in payloads:
        numpy.add.at(out, indices, values)
    return out


class Sparsifier(Compressor):
    """Shared decode and cost: payload = (values (k,), indices (k,) int32)."""

    state_attributes = ("rng", "rank", "step")

    def __init__(self, ratio=0.01, seed=0):
        self.ratio, self.seed = check_ratio(ratio), seed
        self.rng, self.rank, self.step = numpy.random.default_rng(seed), None, 0

    def density(self):
        return self.ratio

    def choose(self, v, k):
        raise NotImplementedError

    def compress(self, g):
        k = k_of(self.density(), g.size)
        indices = self.choose(g, k).astype(numpy.int32)
        self.step += 1
        return g[indices], indices

    def decompress(self, payload, n):
        values, indices = payload
        return scatter_mean([(values, indices)], n, values.dtype)

    def bytes_sent(self, p, n, itemsize):
        return (p - 1) * k_of(self.density(), n) * (itemsize + 4)


class TopK(Sparsifier):
    name = "topk"
    state_attributes = Sparsifier.state_attributes + ("u", "v")     # DGC velocity, accumulator

    def __init__(self, ratio=0.01, momentum_correction=0.0, warmup_steps=0, seed=0):
        super().__init__(ratio, seed)
        if not (0 <= momentum_correction < 1):
            raise ValueError(f"momentum_correction must be in [0, 1), got {momentum_correction!r}")
        if not (isinstance(warmup_steps, int) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be an integer >= 0, got {warmup_steps!r}")
        self.momentum, self.warmup_steps = float(momentum_correction), warmup_steps
        self.u = self.v = None                                       # DGC velocity, accumulator
        self.error_feedback = self.momentum > 0                      # v is the residual

    def density(self):
        if self.step >= self.warmup_steps:
            return self.ratio
        return WARMUP_START * (self.ratio / WARMUP_START) ** (self.step / self.warmup_steps)

    def choose(self, v, k):
        if k == v.size:
            return numpy.arange(k)
        return numpy.argpartition(numpy.abs(v), v.size - k)[v.size - k:]   # O(n), not a sort

    def compress(self, g):
        if not self.momentum:
            return super().compress(g)
        if self.u is None:
            self.u, self.v = numpy.zeros_like(g), numpy.zeros_like(g)
        self.u *= self.momentum
        self.u += g                                                  # u <- m u + g
        self.v += self.u                                             # v <- v + u
        values, indices = super().compress(self.v)
        values = values.copy()
        self.u[indices] = 0                                          # momentum factor masking
        self.v[indices] = 0
        return values, indices

    @property
    def residual(self):
        return self.v


class RandomK(Sparsifier):
    name = "randomk"

    def bind(self, comm):
        if self.rank != comm.rank:
            self.rank, self.rng = comm.rank, numpy.random.default_rng([self.seed, comm.rank])

    def choose(self, v, k):
        return self.rng.choice(v.size, size=k, replace=False)
