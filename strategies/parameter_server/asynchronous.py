"""Asynchronous parameter servers (MATH A3): Downpour SGD (Dean et al. 2012) and Stale
Synchronous Parallel (Ho et al. 2013), with a staleness-aware learning rate (Zhang et al. 2016).

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy ps-async --staleness-lr
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy ps-ssp --staleness 2

ps-async, on server j, for each push as it arrives (any worker, arrival order):

    tau = V - v                    staleness: updates applied since the worker's theta (v)
    theta_j <- optimiser(theta_j, g_k / W)       each g_k is 1/W of the global batch
    V <- V + 1; reply (V, theta_j) to that worker at once

With --staleness-lr the learning rate of that one update is lr / max(1, tau) (Zhang et al.
2016, "Staleness-aware async-SGD"). With W workers of equal speed, a gradient is applied after
the other W - 1 workers' gradients computed meanwhile: mean tau ~ W - 1 (measured in
tests/test_parameter_server.py and in the record's staleness_histogram).

ps-ssp (``--staleness s``): the same updates, but the reply to a worker whose clock c_k (its
pushes so far) is more than s ahead of the slowest worker's, c_k > min_i c_i + s, is deferred
until the slowest catches up (then it gets theta as it is at that moment). So no worker runs
more than s clocks ahead; in update counts a gradient misses at most (W - 1)(2 s + 1) updates.
s = 0: every worker of clock t computes on the same theta, the W gradients of clock t are
applied one by one, lr g_k / W each: ps-sync with plain SGD, up to the order of the sums
(1e-10 float64, tested). s huge: never deferred, ps-async.

Server 0 hands each reply's next chunk first come, first served (schedule.py), so a fast
worker takes more of the epoch's W x steps chunks than a straggler. Each train_step call on a
server handles W pushes (whoever sends them): over the run steps x W, exactly one push per
chunk, so when the epoch ends nothing is in flight and every deferred reply has been sent.
Clocks count pushes per epoch, and SSP's slowest is taken over the workers still in it.
"""
from strategies.parameter_server.common import ParameterServer


class PSAsync(ParameterServer):
    """Downpour: apply each gradient on arrival, scaled by 1/W, answer its worker at once."""

    name = "ps-async"
    staleness_bound = None     # SSP's s; None: replies are never deferred
    state_attributes = ParameterServer.state_attributes + ("clock", "deferred")
    checkpoint_between_steps = False       # pushes are in flight between steps

    def __init__(self, model, comm, staleness_lr=False, **common):
        super().__init__(model, comm, **common)
        self.staleness_lr = staleness_lr
        self.clock = {k: 0 for k in range(self.servers, comm.size)}     # pushes per worker
        self.deferred = []                                              # workers owed a reply

    @classmethod
    def from_args(cls, model, comm, args):
        return cls(model, comm, staleness_lr=args.staleness_lr, **cls.common_args(args))

    def begin_epoch(self, loader, steps):
        super().begin_epoch(loader, steps)
        self.clock = dict.fromkeys(self.clock, 0)                        # clocks count per epoch

    def serve(self, optimizer):
        for _ in range(self.workers):
            push = self.receive()
            if push is None:
                raise RuntimeError(f"{self.name} server {self.comm.rank}: every worker left with "
                                   f"{self.workers * self.epoch_steps - self.handled} pushes of the epoch missing")
            worker, version, _chunk, block = push
            self.apply(optimizer, block, self.version - version)
            self.clock[worker] += 1
            self.deferred.append(worker)
            self.release()

    def apply(self, optimizer, block, tau):
        """theta_j <- optimiser(theta_j, block / W), at lr / max(1, tau) with --staleness-lr."""
        with self.timeline.span("apply"):
            lr = optimizer.defaults["lr"]
            if self.staleness_lr:
                optimizer.defaults["lr"] = lr / max(1, tau)
            try:
                self.shard.grad = block / self.workers
                optimizer.step()
            finally:
                optimizer.defaults["lr"] = lr
            self.version += 1
            self.log_update(tau)

    def next_chunk(self, worker):
        return self.schedule.first_come()

    def release(self):
        """Answer every deferred worker allowed to go on (ps-async: all of them, at once). The
        slowest is taken over the workers still in the epoch, so one that has left never
        holds the others back; answering one may let it leave, hence the loop."""
        bound = self.staleness_bound
        while self.deferred:
            slowest = min((c for k, c in self.clock.items() if k not in self.left), default=0)
            ready = [k for k in self.deferred if bound is None or self.clock[k] <= slowest + bound]
            if not ready:
                return
            self.deferred = [k for k in self.deferred if k not in ready]
            for worker in ready:
                lead = self.clock[worker] - slowest                 # SSP: <= s, by construction
                self.clock_leads[lead] = self.clock_leads.get(lead, 0) + 1
                self.answer(worker)

    def late(self, worker, version, chunk, block):
        raise RuntimeError(f"{self.name} server {self.comm.rank}: a push from worker {worker} "
                           f"(chunk {chunk}) after the epoch's {self.workers * self.epoch_steps} pushes")

    def drain(self):
        """Every push of the epoch was handled in the W per call; wait for the leaves, check."""
        super().drain()
        if self.role == "server" and (self.deferred or self.handled != self.workers * self.steps):
            raise RuntimeError(f"{self.name} server {self.comm.rank}: {len(self.deferred)} replies "
                               f"deferred, {self.handled} of {self.workers * self.steps} pushes handled")


class PSSSP(PSAsync):
    """Stale synchronous parallel: ps-async whose replies wait for the slowest (s clocks)."""

    name = "ps-ssp"

    def __init__(self, model, comm, staleness=2, **kwargs):
        super().__init__(model, comm, **kwargs)
        if staleness < 0:
            raise ValueError(f"--staleness must be >= 0, got {staleness}")
        self.staleness_bound = staleness

    @classmethod
    def from_args(cls, model, comm, args):
        return cls(model, comm, staleness=args.staleness, staleness_lr=args.staleness_lr,
                   **cls.common_args(args))
