"""Mini-batches (``DataLoader``) and the data-parallel split of a data set (``shard``).

Both are deterministic on purpose: data-parallel training is tested against the
single-process run it equals (MATH A1, F10), which only works when every run sees
exactly the same samples in exactly the same order.
"""
import numbers

import numpy as np

from engine.tensor import Tensor


def _check_int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_pair(X, y):
    if len(X) != len(y):
        raise ValueError(f"X and y must have the same length, got len(X)={len(X)} and len(y)={len(y)}")


def shard(X, y, rank, world_size):
    """Rank ``rank``'s contiguous shard of (X, y): rows rank*m .. (rank+1)*m - 1, m = n // world_size.

        n = 10, world_size = 3  ->  m = 3
        rows  0 1 2 | 3 4 5 | 6 7 8 | 9
              rank0   rank1   rank2   dropped

    The last n mod world_size rows are dropped so that every rank holds the same number of
    samples: then the average of the ranks' mean gradients is the mean gradient over all the
    kept samples (MATH F9, F10), and a data-parallel run equals the single-process run on
    X[:m * world_size] exactly. Returns views, not copies.
    """
    _check_int("world_size", world_size, 1)
    _check_int("rank", rank, 0)
    if rank >= world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    _check_pair(X, y)
    m = len(X) // world_size
    if m == 0:
        raise ValueError(f"cannot shard {len(X)} samples over world_size={world_size}: every shard would be empty")
    rows = slice(rank * m, (rank + 1) * m)
    return X[rows], y[rows]


class DataLoader:
    """Iterate over (Tensor(xb), Tensor(yb)) mini-batches of (X, y), one epoch per ``iter()``.

    With shuffle=True epoch e visits the samples in the order
    ``np.random.default_rng([seed, e]).permutation(n)``: a function of (seed, epoch) only, so
    two loaders with the same seed give identical batches, and a restarted job can resume
    with ``set_epoch(e)`` (as PyTorch's DistributedSampler). Each ``iter()`` uses the current
    epoch and then advances it by one. The last batch is smaller when batch_size does not
    divide n, unless drop_last=True drops it.
    """

    def __init__(self, X, y, batch_size, shuffle=True, seed=0, drop_last=False):
        _check_int("batch_size", batch_size, 1)
        _check_int("seed", seed, 0)
        _check_pair(X, y)
        self.X, self.y = X, y
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.epoch = 0

    def set_epoch(self, epoch):
        """Make the next ``iter()`` produce epoch ``epoch``'s order."""
        _check_int("epoch", epoch, 0)
        self.epoch = epoch

    def __len__(self):
        """Number of batches per epoch."""
        n, b = len(self.X), self.batch_size
        return n // b if self.drop_last else -(-n // b)  # floor or ceiling of n / b

    def __iter__(self):
        # Choose the order now, not at the first next(), so iter() alone advances the epoch.
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.X))
        else:
            order = None  # plain slices: batches are views of X and y, no copies
        self.epoch += 1
        return self._batches(order)

    def _batches(self, order):
        for i in range(len(self)):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            if order is not None:
                rows = order[rows]
            yield Tensor(self.X[rows]), Tensor(self.y[rows])  # (B, ...), (B, ...)
