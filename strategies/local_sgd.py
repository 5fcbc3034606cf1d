"""Local SGD / model averaging (MATH F11, A6 "synchronise less often").

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy local-sgd --period 8

Each rank takes H optimiser steps on its own rows, alone; then the ranks average their
parameters, and start the next H steps from the average:

    for t = 1, 2, ...:
        theta_i <- theta_i - alpha grad J_i(theta_i)       every rank, no communication   (F11)
        if t mod H == 0:
            theta_i <- (1/N) sum_j theta_j                  one all-reduce of the parameters

Traffic: one all-reduce of the n parameter bytes every H steps, i.e. 2 (N-1)/N n / H bytes per
rank per step (ring): H times less than data parallelism.

H = 1 with plain SGD IS data parallelism (MATH F12: each node steps from the shared theta with
its own mean gradient, then the results are averaged): the average of the N updated replicas,

    (1/N) sum_i (theta - alpha g_i) = theta - alpha (1/N) sum_i g_i,

is DataParallel's update (F10) - the same numbers up to rounding, proved in the tests.
For H > 1 it is not: replica i's later steps use gradients at its own drifted theta_i.
With momentum or Adam each rank keeps its own optimiser state (never averaged), so H = 1 no
longer equals DataParallel there either.
"""
import collectives
from strategies.base import Strategy, timed
from strategies.parameters import averaged_copy, broadcast_parameters
from strategies.traffic import bucketed_allreduce_bytes


class LocalSGD(Strategy):
    """H local steps, then parameter averaging with the chosen hand-written all-reduce."""

    name = "local-sgd"

    def __init__(self, model, comm, period=8, algorithm="ring", bucket_bytes=1 << 20):
        super().__init__(model, comm)
        if period < 1:
            raise ValueError(f"LocalSGD: period H must be >= 1, got {period}")
        collectives.get_algorithm(algorithm)   # an unknown name fails here, not after H steps
        self.period, self.algorithm, self.bucket_bytes = period, algorithm, bucket_bytes
        self.setup_bytes = broadcast_parameters(model, comm)   # the same theta_0 everywhere

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("local-sgd")
        group.add_argument("--period", type=int, default=8, help="H: local steps between averages")

    @classmethod
    def check(cls, world_size, args):
        if args.period < 1:
            return f"--period must be >= 1 (local steps between averages), got {args.period}"
        return super().check(world_size, args)

    @classmethod
    def from_args(cls, model, comm, args):
        return cls(model, comm, period=args.period, algorithm=args.algorithm,
                   bucket_bytes=args.bucket_bytes)

    def after_step(self):
        if self.steps % self.period == 0:
            self.average_parameters()

    @timed
    def average_parameters(self):
        """theta_i <- (1/N) sum_j theta_j for every parameter, in place (MATH F11)."""
        collectives.bucketed_allreduce(self.comm, [p.data for p in self.model.parameters()],
                                       self.bucket_bytes, self.algorithm, "mean",
                                       inplace=True, check=False)

    def eval_model(self, metrics_comm):
        """The replicas themselves right after an average; between averages, theta_bar."""
        in_sync = self.steps % self.period == 0 or self.comm.size == 1
        return self.model if in_sync else averaged_copy(self.model, metrics_comm)

    def bytes_per_average(self):
        return bucketed_allreduce_bytes(self.algorithm, self.comm.size, [p.data for p in self.model.parameters()],
                                        self.bucket_bytes, self.comm.link)

    def bytes_per_step(self):
        per_average = self.bytes_per_average()
        return None if per_average is None else {self.role: per_average / self.period}

    def bytes_for_steps(self, steps):
        """floor(steps / H) averages: the per-step rate above holds when H divides ``steps``."""
        per_average = self.bytes_per_average()
        return None if per_average is None else {self.role: (steps // self.period) * per_average}
