"""Synchronous parameter server (MATH A2, A3, F10), with backup workers (Chen et al. 2016).

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy ps-sync            # E7: 1 + 3
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy ps-sync --servers 2

One step on server j (block j of theta, version V = steps so far):

    wait for the pushes of version V from all W workers (any order: recv from ANY_SOURCE)
    g = (1/W) sum_k g_k[lo_j:hi_j]        summed in worker-rank order, whatever the arrival (F10)
    theta_j <- optimiser(theta_j, g)      the runner's SGD / momentum / Adam, on the flat block
    V <- V + 1; reply (V, theta_j) to every worker, in rank order

With equal shares of the global batch B, (1/W) sum_k g_k is the gradient of the whole batch,
and elementwise optimisers act on each block alone, so ps-sync on S + W ranks IS one process
at batch B (and dp on W ranks) up to the order of float sums: tests/test_parameter_server.py,
float64 1e-10 after 12 steps with SGD, momentum and Adam, S = 1 and 2.

Backup workers (``--backup-workers b``, MATH A10, Chen et al. 2016, "Revisiting distributed synchronous
SGD"): the server steps as soon as it holds W - b gradients of version V (arrival order; their
mean, in rank order), so the b slowest never hold the step back. A late push (version < V) is
dropped and answered at once with the current theta, so its worker carries on from there.
Each version is answered to at most W workers and W - b of its pushes are used, so at most b
per step are dropped and the server never waits for pushes that cannot come. A late worker
is handed its share of the CURRENT step (schedule.in_step): it skips the batches it missed,
and a straggler that hears NONE_LEFT stops, so the epoch lasts as long as the W - b fastest
take. ``drain`` (the end of each epoch) answers the pushes still coming, until every worker
has left. With S > 1 servers and backup workers, the blocks may step with different workers;
a block that lags when every worker has left makes fewer steps that epoch.

Cost per step: each server receives W (n_j + 8) bytes and sends as much (protocol.py); time
is the slowest of the W - b fastest workers plus 2 transfers, versus the slowest of all W.
"""
from strategies.parameter_server.common import ParameterServer


class PSSync(ParameterServer):
    """Synchronous SGD through S servers; ``backup`` late workers per step are dropped."""

    name = "ps-sync"

    @property
    def checkpoint_between_steps(self):
        """Without backup workers nothing is in flight between steps; with them, late pushes."""
        return self.backup == 0

    def __init__(self, model, comm, backup=0, **common):
        super().__init__(model, comm, **common)
        if not 0 <= backup < self.workers:
            raise ValueError(f"--backup-workers {backup} must be in 0 .. W-1 = {self.workers - 1}")
        self.backup = backup

    @classmethod
    def from_args(cls, model, comm, args):
        return cls(model, comm, backup=args.backup_workers, **cls.common_args(args))

    def serve(self, optimizer):
        needed = self.workers - self.backup
        fresh = {}                                       # worker -> its gradient block, version V
        while len(fresh) < needed:
            push = self.receive()
            if push is None:         # all have left: this block lags the others (S > 1, backups)
                return
            worker, version, chunk, block = push
            if version == self.version:
                fresh[worker] = block
            else:                                        # computed on an older theta: too late
                self.late(worker, version, chunk, block)
        with self.timeline.span("apply"):
            used = sorted(fresh)                         # rank order: the same sum as F10's
            self.shard.grad = sum(fresh[k] for k in used) / needed
            optimizer.step()
            self.version += 1
            for _ in used:
                self.log_update(0)                       # every applied gradient is of version V
        for worker in used:
            self.answer(worker)

    def next_chunk(self, worker):
        """The worker's share of the batch of the version it is answered with (schedule.py)."""
        return self.schedule.in_step(worker, self.version)

    def late(self, worker, version, chunk, block):
        """A push of an older version: dropped, answered with theta and the current step."""
        self.dropped += 1
        self.answer(worker)
