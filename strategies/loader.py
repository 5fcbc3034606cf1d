"""Each rank's rows of every global batch: the same batches for every strategy and world size."""
import numpy

from engine import Tensor, data


class RankLoader:
    """This rank's ``rows`` of every global batch of (X, y): one epoch of Tensors per ``iter()``.

        epoch e:  order = permutation(n) from (seed, e)          the same on every rank
        step s:   batch = order[s B : (s + 1) B]                  (a last partial batch is dropped)
                  yield X[batch[rows]], y[batch[rows]]            rows = strategy.local_rows(B)

    The order is ``DataLoader``'s (engine/data/loader.py) over the row numbers, so a K-rank
    run and the single-process run at batch B visit exactly the same samples in the same order.
    A rank with no rows (a parameter server) gets empty batches, one per step all the same.
    """

    def __init__(self, X, y, batch_size, rows, seed=0):
        n = len(X)
        self.X, self.y, self.rows = X, y, rows
        self.order = data.DataLoader(numpy.arange(n), numpy.arange(n), batch_size, shuffle=True,
                                     seed=seed, drop_last=True)

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        for batch, _ in self.order:                    # (B,) global row numbers
            mine = batch.numpy()[self.rows]            # (B/K,) this rank's
            yield Tensor(self.X[mine]), Tensor(self.y[mine])
