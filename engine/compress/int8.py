"""The int8 matrix product with int32 accumulation, the one kernel of a quantized layer (MATH A7).

With x ~ s_x (q_x - z_x) and w ~ s_w q_w (q integers in [-128, 127]), an affine layer's product
is one integer matrix product and a float rescale at the end:

    y[n, o] = sum_k x[n, k] w[o, k] ~ s_x s_w[o] (acc[n, o] - z_x sum_k q_w[o, k])
    acc[n, o] = sum_k q_x[n, k] q_w[o, k]                  (int8 x int8 summed in int32)

Each product is at most 128 * 128 = 2^14 in magnitude, so an int32 sum of k of them cannot
overflow while k < 2^17 = 131,072 (the kernel checks). Cost: n k m multiply-adds on one byte
per operand, a quarter of float32's memory traffic. This Numba loop runs on one thread per rank
(no ``parallel=True``, as engine/kernels/cpu.py) and has no tiling: BLAS's blocked, vectorised
float32 sgemm is faster on a CPU (``time_against_float32``); the int8 kernel's gain is bytes,
and the speed it gets on hardware with int8 dot-product instructions.

Numba is imported, and the kernel compiled (or loaded from the disk cache), on the first call,
as engine/kernels does: ``import engine.compress.int8`` costs nothing.
"""
import functools
import time

import numpy

MAX_K = 2 ** 31 // 2 ** 14  # more summands than this could overflow the int32 accumulator


def _int8_matmul_loops(a, b):
    """a (n, k) int8, b (k, m) int8 -> c (n, m) int32::

        c = 0
        for i, p, j:  c[i, j] += int32(a[i, p]) * int32(b[p, j])

    i-p-j order: the innermost loop walks a row of b and a row of c, both contiguous, which
    LLVM vectorises; the int32 store keeps the sum exact (it fits, see MAX_K)."""
    n, k = a.shape
    m = b.shape[1]
    c = numpy.zeros((n, m), dtype=numpy.int32)
    for i in range(n):
        for p in range(k):
            a_ip = numpy.int32(a[i, p])
            for j in range(m):
                c[i, j] += a_ip * numpy.int32(b[p, j])
    return c


@functools.cache
def _compiled():
    from numba import njit  # here, on the first call: Numba takes 0.6 s to import
    return njit(cache=True, nogil=True)(_int8_matmul_loops)


def int8_matmul(a, b):
    """a (n, k) int8 @ b (k, m) int8 -> (n, m) int32, exactly ``a.astype(int32) @ b.astype(int32)``."""
    if a.dtype != numpy.int8 or b.dtype != numpy.int8:
        raise TypeError(f"int8_matmul: expected int8 operands, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"int8_matmul: shapes {a.shape} and {b.shape} do not chain")
    if a.shape[1] >= MAX_K:
        raise ValueError(f"int8_matmul: k = {a.shape[1]} could overflow int32 (k < {MAX_K})")
    return _compiled()(numpy.ascontiguousarray(a), numpy.ascontiguousarray(b))


def requantize(acc, scale, zero_point=0):
    """int32 accumulator -> int8: clip(round(acc * scale) + zero_point, -128, 127).

    ``scale`` = s_in s_w / s_out, a float (or one per output column). Integer-only hardware
    writes it as a fixed-point multiplier and a shift, M 2^-n; a float is the same number,
    written out plainly."""
    q = numpy.rint(acc * numpy.asarray(scale, dtype=numpy.float64)) + zero_point
    return numpy.clip(q, -128, 127).astype(numpy.int8)


def time_against_float32(n=256, k=784, m=300, repeats=5, seed=0):
    """Best-of-``repeats`` seconds of int8_matmul and of float32 BLAS ``@`` at (n, k) x (k, m);
    prints both and returns {"int8": s, "float32": s}. The first int8 call (compilation) is
    not timed."""
    rng = numpy.random.default_rng(seed)
    a8, b8 = (rng.integers(-128, 128, size=s, dtype=numpy.int8) for s in ((n, k), (k, m)))
    a32, b32 = a8.astype(numpy.float32), b8.astype(numpy.float32)
    int8_matmul(a8, b8)

    def best(fn):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    result = {"int8": best(lambda: int8_matmul(a8, b8)), "float32": best(lambda: a32 @ b32)}
    print(f"{n}x{k}x{m}: int8 (Numba, 1 thread) {result['int8'] * 1e3:.2f} ms, "
          f"float32 (BLAS) {result['float32'] * 1e3:.2f} ms, "
          f"ratio {result['int8'] / result['float32']:.1f}x")
    return result
