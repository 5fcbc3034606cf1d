"""How n elements are cut into p chunks (ring, reduce-scatter, all-gather).

Chunk i holds elements [lo_i, hi_i). When p does not divide n, the first n mod p chunks get
one element more:

    size_i = n // p + (1 if i < n % p else 0)        lo_i = sum_{j<i} size_j

    n = 10, p = 4:   | 0 1 2 | 3 4 5 | 6 7 | 8 9 |     sizes 3 3 2 2
    n =  2, p = 4:   | 0 | 1 |  |  |                  sizes 1 1 0 0  (empty chunks still
                                                      travel: a message of 0 bytes)
"""


def chunk_sizes(n, p):
    """[size_0, ..., size_{p-1}]: as equal as possible, larger ones first, summing to n."""
    base, extra = divmod(n, p)
    return [base + (1 if i < extra else 0) for i in range(p)]


def chunk_bounds(n, p):
    """[(lo_0, hi_0), ..., (lo_{p-1}, hi_{p-1})] for the sizes above."""
    bounds, lo = [], 0
    for size in chunk_sizes(n, p):
        bounds.append((lo, lo + size))
        lo += size
    return bounds
