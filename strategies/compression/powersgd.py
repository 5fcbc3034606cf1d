"""PowerSGD (Vogels et al. 2019): a rank-r factorisation per gradient matrix, by one power step.

The flat g splits, in order, into pieces of the given ``shapes``; a piece of shape (m, k)
(k > 1, m > 1) is a matrix M, a 1-D piece (biases; or the whole g when no shapes are given)
is all-reduced uncompressed. With r = min(rank, m, k) and e the error-feedback memory:

    M <- G + e                        (local gradient + what earlier steps did not send)
    P = M Q                  (m, r)   Q (k, r): last step's agreed Q (warm start); step 0 from
                                      a normal draw with ``seed``, the same on every rank
    P <- mean_ranks P                 ring all-reduce
    P <- orthonormal columns          reduced QR (the same P on every rank: same input)
    Q = M^T P                (k, r)
    Q <- mean_ranks Q                 ring all-reduce
    estimate = P Q^T = P P^T mean_ranks(M)        the same on every rank
    e <- M - P Q^T                    local M minus the agreed estimate (as PyTorch's
                                      powerSGD_hook; error feedback is part of the method;
                                      1-D pieces are sent whole, their e stays 0)

At r = min(m, k) the projection P P^T covers the column space of mean(M) (for full-rank Q),
so the estimate is the exact mean. Bytes per rank (ring, linear in size, so batching all P's
into one all-reduce, and all Q's plus the 1-D pieces into another, changes nothing):

    sum_matrices 2 (p-1)/p * r (m + k) * itemsize  +  2 (p-1)/p * n_1d * itemsize

against 2 (p-1)/p * m k * itemsize uncompressed: a factor m k / (r (m + k)) less (MATH A6).
``compress``/``decompress`` are the one-rank version (no all-reduce, no state change).
"""
import numpy

import collectives
from strategies.compression.base import Compressor


def orthonormalise(P):
    """Orthonormal columns spanning P's (reduced QR; Gram-Schmidt done stably)."""
    return numpy.linalg.qr(P)[0]


class PowerSGD(Compressor):
    name = "powersgd"
    state_attributes = ("Q", "e", "layout")          # warm-started Q, the residual

    def __init__(self, rank=1, shapes=None, error_feedback=True, seed=0):
        if not (isinstance(rank, int) and rank >= 1):
            raise ValueError(f"rank must be an integer >= 1, got {rank!r}")
        self.rank, self.shapes, self.seed = rank, shapes and [tuple(s) for s in shapes], seed
        self.error_feedback = error_feedback
        self.Q, self.e, self.layout = None, None, None

    def plan(self, n):
        """[(lo, hi, (m, k) or None)]: where each piece lies in g; None marks a 1-D piece."""
        shapes = self.shapes or [(n,)]
        sizes = [int(numpy.prod(s)) for s in shapes]
        if sum(sizes) != n:
            raise ValueError(f"shapes {shapes} hold {sum(sizes)} elements, the gradient has {n}")
        layout, lo = [], 0
        for shape, size in zip(shapes, sizes):
            matrix = len(shape) == 2 and min(shape) > 1
            layout.append((lo, lo + size, shape if matrix else None))
            lo += size
        return layout

    def start(self, g):
        if self.layout is None:
            self.layout = self.plan(g.size)
            rng = numpy.random.default_rng(self.seed)                # shared seed: same Q everywhere
            self.Q = [rng.standard_normal((s[1], min(self.rank, *s))).astype(g.dtype)
                      for _, _, s in self.layout if s is not None]
            self.e = numpy.zeros_like(g)

    def factors(self, comm, g, update):
        """(flat 1-D pieces mean, [P], [Q]) for g (+ e if error feedback); ``comm`` None: one rank."""
        self.start(g)
        M_flat = g + self.e if self.error_feedback else g
        mean = (lambda x: x) if comm is None else (
            lambda x: collectives.allreduce(comm, x, "ring", "mean", check=False) if x.size else x)
        mats = [M_flat[lo:hi].reshape(s) for lo, hi, s in self.layout if s is not None]
        flat = numpy.concatenate([M_flat[lo:hi] for lo, hi, s in self.layout if s is None] or [g[:0]])
        Ps = [M @ Q for M, Q in zip(mats, self.Q)]
        Ps = split(mean(join(Ps)), Ps)                               # all-reduce every P at once
        Ps = [orthonormalise(P) for P in Ps]
        Qs = [M.T @ P for M, P in zip(mats, Ps)]
        reduced = mean(join(Qs + [flat]))                            # all Q's + the 1-D pieces
        Qs, flat = split(reduced[:reduced.size - flat.size], Qs), reduced[reduced.size - flat.size:]
        if update:
            self.Q = Qs
        return M_flat, (flat, Ps, Qs)

    def assemble(self, payload, n, dtype):
        flat, Ps, Qs = payload
        out, i, j = numpy.empty(n, dtype), 0, 0
        for lo, hi, s in self.layout:
            if s is None:
                out[lo:hi] = flat[j:j + hi - lo]
                j += hi - lo
            else:
                out[lo:hi] = (Ps[i] @ Qs[i].T).reshape(-1)
                i += 1
        return out

    def compress(self, g):
        return self.factors(None, g, update=False)[1]

    def decompress(self, payload, n):
        return self.assemble(payload, n, payload[0].dtype)

    def exchange(self, comm, g):
        M_flat, payload = self.factors(comm, g, update=True)
        estimate = self.assemble(payload, g.size, g.dtype)
        if self.error_feedback:
            self.e = M_flat - estimate
            for lo, hi, s in self.layout:
                if s is None:
                    self.e[lo:hi] = 0                                # sent whole: nothing kept
        return estimate

    def bytes_sent(self, p, n, itemsize):
        layout = self.layout or self.plan(n)
        elements = sum((hi - lo) if s is None else min(self.rank, *s) * (s[0] + s[1])
                       for lo, hi, s in layout)
        return 2 * (p - 1) / p * elements * itemsize


def join(arrays):
    return numpy.concatenate([a.reshape(-1) for a in arrays]) if arrays else numpy.zeros(0)


def split(flat, like):
    out, lo = [], 0
    for a in like:
        out.append(flat[lo:lo + a.size].reshape(a.shape))
        lo += a.size
    return out
