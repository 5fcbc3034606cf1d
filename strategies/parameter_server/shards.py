"""Which server owns which block of theta (MATH F13 on the server side), and the whole model back.

theta is the flat parameter vector in ``strategies.parameters.flat_parameters`` order, n
elements. S servers own S contiguous blocks of near-equal size (so near-equal bytes, every
element having one dtype):

    n = 10, S = 3:    theta  0 1 2 | 3 4 5 | 6 7 8 9        lo_j = floor(j n / S)
                      server   0       1        2            block j = theta[lo_j : lo_{j+1}]

Blocks differ by at most one element. A worker pushes server j the slice g[lo_j:lo_{j+1}] of
its gradient and pulls theta[lo_j:lo_{j+1}]; a server's optimiser sees only its block, which
is exact for the elementwise optimisers (SGD, momentum, Adam update each element alone).
"""
import copy

import numpy

import collectives
from strategies.parameters import flat_parameters, load_flat_parameters


def shard_bounds(n, servers):
    """[(lo_j, hi_j) for j in range(servers)]: the contiguous blocks of n elements, sizes
    differing by at most one (the table above)."""
    edges = [j * n // servers for j in range(servers + 1)]
    return list(zip(edges[:-1], edges[1:]))


def assembled_from_shards(model, shard, bounds, comm):
    """A copy of ``model`` whose theta is the servers' blocks, on every rank of ``comm``.

    ``shard``: this rank's block (a server, ranks 0..S-1 of ``comm``) or None (a worker).
    Collective: server j broadcasts its block (a binomial tree, ceil(log2 K) rounds of
    n_j bytes), every rank writes it at theta[lo_j:hi_j]. Cost: S broadcasts, n bytes in all
    from the roots, over ``comm`` (the metrics communicator: not counted as training)."""
    theta = flat_parameters(model)                                       # (n,)
    for server, (lo, hi) in enumerate(bounds):
        block = numpy.ascontiguousarray(shard) if comm.rank == server else numpy.empty(hi - lo, theta.dtype)
        theta[lo:hi] = collectives.broadcast(comm, block, root=server, check=False)
    whole = copy.deepcopy(model)
    load_flat_parameters(whole, theta)
    return whole
