"""A pruned weight matrix stored as CSR, and the sparse x dense products that use it (MATH A7).

Compressed Sparse Row keeps, of an (m, k) matrix W with nnz nonzeros, three arrays:

    W = [[0 5 0 0]        data    = [5 7 2 9]       the nonzeros, row by row       (nnz,)
         [0 0 0 0]        indices = [1 0 3 2]       the column of each              (nnz,)
         [7 0 2 0]        indptr  = [0 1 1 3 4]     row i is data[indptr[i]:indptr[i+1]]  (m+1,)
         [0 0 9 0]]

so it costs nnz (itemsize + 4) + 4 (m + 1) bytes against m k itemsize dense: at float32 it
saves memory once more than half the weights are zero. The products skip the zeros:

    csr_matmul     Y = W X,    X (k, n):  Y[i, :] += W[i, j] X[j, :] for each stored (i, j)
    sparse_linear  Z = x W^T + b, x (N, k): the Linear forward (MATH F1), as (W x^T)^T

2 nnz n flops against 2 m k n for dense, but the dense product runs at BLAS speed (blocked,
vectorised, every operand reused from cache) while CSR's gathers X[j, :] by the column index;
``time_sparse_vs_dense`` measures where the sparse kernel starts to win.

Numba is imported with this module (only compression code imports it, not ``import engine``);
each kernel compiles on its first call per dtype and is cached on disk, as in kernels/cpu.py.
"""
import time

import numpy
from numba import njit

from engine.nn.module import Module
from engine.tensor import Tensor


class CSR:
    """An (m, k) matrix as (indptr int32 (m+1,), indices int32 (nnz,), data (nnz,)), columns
    ascending within each row (the table above). ``from_dense``/``to_dense`` round-trip exactly."""

    def __init__(self, indptr, indices, data, shape):
        self.indptr = numpy.ascontiguousarray(indptr, dtype=numpy.int32)
        self.indices = numpy.ascontiguousarray(indices, dtype=numpy.int32)
        self.data = numpy.ascontiguousarray(data)
        self.shape = (int(shape[0]), int(shape[1]))
        if len(self.indptr) != self.shape[0] + 1 or len(self.indices) != len(self.data):
            raise ValueError(f"CSR: indptr of {len(self.indptr)} for {self.shape[0]} rows, or "
                             f"{len(self.indices)} indices for {len(self.data)} values")

    @classmethod
    def from_dense(cls, W):
        """The nonzeros of a 2-D array, in row-major order (numpy.nonzero's order)."""
        W = numpy.asarray(W)
        if W.ndim != 2:
            raise ValueError(f"CSR.from_dense: expected a 2-D array, got shape {W.shape}")
        rows, cols = numpy.nonzero(W)
        indptr = numpy.zeros(W.shape[0] + 1, numpy.int32)
        numpy.cumsum(numpy.bincount(rows, minlength=W.shape[0]), out=indptr[1:])
        return cls(indptr, cols, W[rows, cols], W.shape)

    def to_dense(self):
        W = numpy.zeros(self.shape, self.data.dtype)
        rows = numpy.repeat(numpy.arange(self.shape[0]), numpy.diff(self.indptr))
        W[rows, self.indices] = self.data
        return W

    @property
    def nnz(self):
        return len(self.data)

    @property
    def nbytes(self):
        """Bytes of the three arrays: nnz (itemsize + 4) + 4 (m + 1)."""
        return self.indptr.nbytes + self.indices.nbytes + self.data.nbytes

    def __repr__(self):
        return f"CSR(shape={self.shape}, nnz={self.nnz}, dtype={self.data.dtype})"


@njit(cache=True, nogil=True)
def _csr_matmul(indptr, indices, data, x):
    """W (m, k) in CSR, x (k, n) -> y (m, n)::

        for i, p in indptr[i]..indptr[i+1]:  y[i, :] += data[p] * x[indices[p], :]

    The inner loop runs along a row of x and of y, both contiguous: LLVM vectorises it, and
    each stored weight is loaded once for n multiply-adds."""
    m, n = len(indptr) - 1, x.shape[1]
    y = numpy.zeros((m, n), dtype=x.dtype)
    for i in range(m):
        for p in range(indptr[i], indptr[i + 1]):
            a, j = data[p], indices[p]
            for c in range(n):
                y[i, c] += a * x[j, c]
    return y


def csr_matmul(csr, x):
    """W x for W a CSR (m, k) and x a dense (k, n) -> (m, n), in W's dtype. Sums each output
    in column order, not in BLAS's blocked order: equal to ``W.to_dense() @ x`` to rounding
    (float64: relative 1e-12; float32: relative 1e-5, tests/test_compress_sparse_sharing.py)."""
    x = numpy.asarray(x)
    if x.ndim != 2 or x.shape[0] != csr.shape[1]:
        raise ValueError(f"csr_matmul: W is {csr.shape}, x is {x.shape}")
    x = numpy.ascontiguousarray(x, dtype=csr.data.dtype)
    return _csr_matmul(csr.indptr, csr.indices, csr.data, x)


def sparse_linear(x, csr, bias=None):
    """z = x W^T + b (MATH F1) for x (N, k), W a CSR (m, k), b (m,) -> (N, m).

    Computed as (W x^T)^T: one transposed copy of x (N k elements) lets ``csr_matmul`` run its
    contiguous inner loop over the batch: measured 10x faster (300 x 784, batch 256, 2 cores)
    than one dot product per output gathering x[b, indices[p]], which cannot vectorise."""
    x = numpy.asarray(x)
    if x.ndim != 2 or x.shape[1] != csr.shape[1]:
        raise ValueError(f"sparse_linear: x is {x.shape}, W is {csr.shape}")
    z = csr_matmul(csr, x.T).T
    z = numpy.ascontiguousarray(z)
    if bias is not None:
        z += numpy.asarray(bias, dtype=z.dtype)
    return z


class SparseLinear(Module):
    """A Linear whose weight is stored as CSR: ``SparseLinear.from_linear(linear)`` keeps its
    nonzeros (prune first, e.g. ``weight.data *= mask``). For inference only: ``forward``
    returns a Tensor that does not require grad, and the layer has no Parameters (the CSR and
    the bias are plain arrays), so a Sequential of them has an empty ``state_dict``."""

    def __init__(self, csr, bias=None):
        self.csr = csr
        self.bias = None if bias is None else numpy.asarray(bias, dtype=csr.data.dtype).copy()
        self.out_features, self.in_features = csr.shape

    @classmethod
    def from_linear(cls, linear):
        weight, bias = linear.weight.detach().numpy(), linear.bias
        return cls(CSR.from_dense(weight), None if bias is None else bias.detach().numpy())

    def forward(self, x):
        data = x.detach().numpy() if isinstance(x, Tensor) else numpy.asarray(x)
        return Tensor(sparse_linear(data, self.csr, self.bias))

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"nnz={self.csr.nnz}, bias={self.bias is not None}")


def _best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def time_sparse_vs_dense(shape=(300, 784), batch=256, sparsities=(0.5, 0.8, 0.9, 0.95, 0.99),
                         repeats=20, dtype=numpy.float32, seed=0):
    """The Linear forward x W^T, W of ``shape`` with a random fraction ``sparsity`` of zeros,
    x (batch, k): ``sparse_linear`` against dense BLAS (``x @ W.T``) on the same arrays, best of
    ``repeats``. One dict per sparsity: sparsity, nnz, dense_s, sparse_s, and ratio =
    sparse_s / dense_s (< 1: the sparse kernel wins). Compiles the kernel first, untimed."""
    rng = numpy.random.default_rng(seed)
    x = rng.standard_normal((batch, shape[1])).astype(dtype)
    rows = []
    for sparsity in sparsities:
        W = rng.standard_normal(shape).astype(dtype)
        W[rng.random(shape) < sparsity] = 0
        csr = CSR.from_dense(W)
        sparse_linear(x, csr)  # compile (or load from the disk cache) outside the timing
        dense_s = _best_time(lambda: x @ W.T, repeats)
        sparse_s = _best_time(lambda: sparse_linear(x, csr), repeats)
        rows.append({"sparsity": sparsity, "nnz": csr.nnz, "dense_s": dense_s,
                     "sparse_s": sparse_s, "ratio": sparse_s / dense_s})
    return rows
