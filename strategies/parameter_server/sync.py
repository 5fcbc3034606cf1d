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
per step are dropped and the server never waits for pushes that cannot come. ``drain`` (the
end of each epoch) receives and answers the pushes still owed: W x steps pushes in all.

Cost per step: each server receives W (n_j + 8) bytes and sends as much (protocol.py); time
is the slowest of the W - b fastest workers plus 2 transfers, versus the slowest of all W.
"""
from strategies.parameter_server.common import ParameterServer


class PSSync(ParameterServer):
    """Synchronous SGD through S servers; ``backup`` late workers per step are dropped."""

    name = "ps-sync"

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
            worker, version, block = self.receive()
            if version == self.version:
                fresh[worker] = block
            else:                                        # computed on an older theta: too late
                self.dropped += 1
                self.answer(worker)
        with self.timeline.span("apply"):
            used = sorted(fresh)                         # rank order: the same sum as F10's
            self.shard.grad = sum(fresh[k] for k in used) / needed
            optimizer.step()
            self.version += 1
            for _ in used:
                self.log_update(0)                       # every applied gradient is of version V
        for worker in used:
            self.answer(worker)

    def drain(self):
        """Answer every push still owed (late pushes of the last steps): the workers have all
        pushed W x steps times when the epoch ends, and each push gets one reply."""
        if self.role != "server":
            return
        while self.handled < self.workers * self.steps:
            worker, _version, _block = self.receive()
            self.dropped += 1
            self.answer(worker)
