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

    ``take(step, rows)`` reads any rows of any global batch of the epoch being iterated: a
    parameter-server worker trains on the chunk its server hands it, not on fixed rows.
    """

    def __init__(self, X, y, batch_size, rows, seed=0):
        n = len(X)
        self.X, self.y, self.rows, self.batch_size = X, y, rows, batch_size
        self.order = data.DataLoader(numpy.arange(n), numpy.arange(n), batch_size, shuffle=True,
                                     seed=seed, drop_last=True)
        self.batches = None                            # (steps, B) row numbers of this epoch

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        return self.steps_from(0)

    def set_epoch(self, epoch):
        """The next iteration is epoch ``epoch`` (from 0): what a resumed run starts with."""
        self.order.set_epoch(epoch)

    def steps_from(self, first):
        """This epoch's batches from step ``first`` on (a run resumed mid-epoch skips the rest)."""
        self.batches = numpy.stack([batch.numpy() for batch, _ in self.order])
        for step in range(first, len(self.batches)):
            yield self.take(step, self.rows)

    def take(self, step, rows):
        """(X, y) of ``rows`` (a slice of 0 .. B-1) of global batch ``step`` of this epoch."""
        if self.batches is None:
            raise RuntimeError("RankLoader.take: no epoch yet (iterate over the loader first)")
        if not 0 <= step < len(self.batches):
            raise IndexError(f"RankLoader.take: step {step} outside the epoch's 0 .. {len(self.batches) - 1}")
        mine = self.batches[step][rows]                # (|rows|,) global row numbers
        return Tensor(self.X[mine]), Tensor(self.y[mine])
