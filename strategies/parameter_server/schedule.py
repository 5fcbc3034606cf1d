"""Which rows a worker trains on next: server 0 hands out the epoch's chunks (MATH A10).

An epoch of T global batches of B rows is C = W T chunks of B/W rows:

    chunk c  =  share (c mod W) of global batch (c div W)          rows of RankLoader.take
    worker i (world rank S + i) starts the epoch on chunk i; every reply of server 0 names
    the chunk it computes next, or NONE_LEFT: it has left the epoch (it tells servers 1..S-1)

How server 0 picks:
    in_step   (ps-sync)   worker i's share of the batch the server's version is at:
                          (V - V_0) W + i, NONE_LEFT once the epoch's T steps are done;
                          a late worker (backup workers) skips to the current step
    first_come (ps-async, ps-ssp)  the next chunk nobody has had, NONE_LEFT after the C-th

Equal-speed ps-sync hands worker i exactly the rows the static split gave it (chunks i, W + i,
2 W + i, ...), so it still equals one process at batch B. A worker twice as fast takes twice
as many chunks under first_come, and a straggler that hears NONE_LEFT stops: an epoch lasts
C / (sum of the workers' rates), not T x the slowest worker's step time.
"""
from strategies.checkpoint.stateful import Stateful

NONE_LEFT = -1     # in a reply: no chunk for you this epoch; in a push: "I have left" (no block)


def chunk_rows(chunk, workers, batch_size):
    """(global batch, rows slice) of ``chunk``: share chunk mod W of batch chunk div W."""
    step, share = divmod(chunk, workers)
    b = batch_size // workers
    return step, slice(share * b, (share + 1) * b)


class Schedule(Stateful):
    """Server 0's hand-out of one epoch's chunks (see the module docstring)."""

    state_attributes = ("start_version", "next")     # steps: begin() sets it from the epoch

    def __init__(self, workers, first_worker):
        self.workers, self.first_worker = workers, first_worker
        self.begin(steps=0, version=0)

    def begin(self, steps, version):
        """A new epoch of ``steps`` global batches, starting at server version ``version``;
        chunks 0 .. W-1 are already taken (worker i starts on chunk i)."""
        self.steps, self.start_version, self.next = steps, version, self.workers

    def first_come(self):
        """The next chunk nobody has had, or NONE_LEFT."""
        if self.next >= self.workers * self.steps:
            return NONE_LEFT
        self.next += 1
        return self.next - 1

    def in_step(self, worker, version):
        """``worker``'s share of the global batch of ``version``, or NONE_LEFT after the epoch."""
        step = version - self.start_version
        if step >= self.steps:
            return NONE_LEFT
        return step * self.workers + worker - self.first_worker
