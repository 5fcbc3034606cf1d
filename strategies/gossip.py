"""Gossip (decentralised) SGD: average only with your neighbours (MATH A6, local synchronisation).

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy gossip --topology ring

No all-reduce, no rank that everybody waits for: after each local step, rank i replaces its
parameters by the mean over itself and its neighbours N(i) in a fixed graph,

    theta_i <- (1/(d+1)) (theta_i + sum_{j in N(i)} theta_j),      d = |N(i)|

i.e. theta <- W theta with the mixing matrix W_ij = 1/(d+1) for j in N(i) or j = i. On a ring
of K ranks (N(i) = {i-1, i+1}), K = 5:

         0   1   2   3   4                  W is symmetric and every row and column sums to 1
    0 [ 1/3 1/3  .   .  1/3 ]               (doubly stochastic), so the mean theta_bar is kept
    1 [ 1/3 1/3 1/3  .   .  ]               by every mixing step, and the differences
    2 [  .  1/3 1/3 1/3  .  ]               theta_i - theta_bar shrink by the second-largest
    3 [  .   .  1/3 1/3 1/3 ]               eigenvalue lambda_2 = (1 + 2 cos(2 pi / K)) / 3
    4 [ 1/3  .   .  1/3 1/3 ]               per step (0.33 for K = 4, 0.95 for K = 16)

so the replicas never agree exactly while training moves them apart again: the consensus
distance  sqrt((1/K) sum_i ||theta_i - theta_bar||^2)  measures by how much (the runner records
it each epoch; tutorial 05 plots it per step). We evaluate theta_bar.

For K = 2 the two neighbours are the same rank (d = 1) and for K = 3 everyone is a neighbour:
both are exact averaging, i.e. local SGD with H = 1. Gossip differs from it from K = 4 on.

Traffic: each rank sends its n parameter bytes to each of its d neighbours every step, d n
bytes, whatever K is - constant in K, where the ring all-reduce's latency term grows with K.
Messages carry Tag.GOSSIP, with isend/irecv so the d exchanges overlap.
"""
import numpy

from collectives.tags import Tag
from strategies.base import Strategy, timed
from strategies.parameters import averaged_copy, broadcast_parameters, flat_parameters, load_flat_parameters


class Topology:
    """Who talks to whom: ``neighbours(rank)`` in a graph over ``size`` ranks (an object, not a global)."""

    def __init__(self, kind, size):
        if kind not in TOPOLOGIES:
            raise ValueError(f"unknown topology {kind!r}: choose one of {sorted(TOPOLOGIES)}")
        self.kind, self.size = kind, size

    def neighbours(self, rank):
        """Sorted distinct ranks other than ``rank`` that it averages with."""
        return sorted(set(TOPOLOGIES[self.kind](rank, self.size)) - {rank})

    def mixing_matrix(self):
        """W (K, K): W_ij = 1/(d_i + 1) for j in N(i) and j = i, else 0."""
        W = numpy.zeros((self.size, self.size))
        for i in range(self.size):
            group = [i] + self.neighbours(i)
            W[i, group] = 1.0 / len(group)
        return W


TOPOLOGIES = {
    "ring": lambda rank, size: [(rank - 1) % size, (rank + 1) % size],
    "complete": lambda rank, size: list(range(size)),
}


class Gossip(Strategy):
    """Local SGD step, then theta_i <- mean over {i} and N(i) (see the module docstring)."""

    name = "gossip"
    min_world_size = 2

    def __init__(self, model, comm, topology="ring"):
        super().__init__(model, comm)
        self.topology = Topology(topology, comm.size)
        self.peers = self.topology.neighbours(comm.rank)        # e.g. [left, right]
        self.setup_bytes = broadcast_parameters(model, comm)   # the same theta_0 everywhere

    @classmethod
    def add_arguments(cls, parser):
        group = parser.add_argument_group("gossip")
        group.add_argument("--topology", choices=sorted(TOPOLOGIES), default="ring",
                           help="who averages with whom")

    @classmethod
    def check(cls, world_size, args):
        if args.topology not in TOPOLOGIES:
            return f"unknown --topology {args.topology!r}: choose one of {sorted(TOPOLOGIES)}"
        return super().check(world_size, args)

    @classmethod
    def from_args(cls, model, comm, args):
        return cls(model, comm, topology=args.topology)

    def after_step(self):
        self.mix()

    @timed
    def mix(self):
        """theta_i <- (theta_i + sum_{j in N(i)} theta_j) / (d + 1), exchanging with isend/irecv."""
        theta = flat_parameters(self.model)                                   # (n,)
        incoming = [numpy.empty_like(theta) for _ in self.peers]             # d x (n,)
        requests = [self.comm.irecv(buf, peer, Tag.GOSSIP) for buf, peer in zip(incoming, self.peers)]
        requests += [self.comm.isend(theta, peer, Tag.GOSSIP) for peer in self.peers]
        self.comm.waitall(requests)
        mixed = theta.copy()
        for buf in incoming:           # always self first, then neighbours by rank: reproducible
            mixed += buf
        mixed /= len(self.peers) + 1
        load_flat_parameters(self.model, mixed)

    def eval_model(self, metrics_comm):
        return averaged_copy(self.model, metrics_comm)                       # theta_bar

    def bytes_per_step(self):
        """d n: theta to each of the d distinct neighbours, every step."""
        return {self.role: len(self.peers) * self.model_bytes()}
