"""The process grid: world ranks as coordinates (dp, pp, tp), one sub-communicator per axis.

    grid = Grid(comm, dp=2, pp=2, tp=1)          # built once, on every rank, passed explicitly
    grid.dp_rank, grid.pp_rank, grid.tp_rank     # this rank's coordinates
    grid.pp_prev, grid.pp_next                   # the neighbouring stages: ranks in grid.pp, or None
    grid.dp                                      # the ranks holding the same stage and shard:
                                                 #   gradients are all-reduced over it

Layout (Megatron's order: tp varies fastest, then pp, then dp):

    world rank = (dp_rank * pp + pp_rank) * tp + tp_rank

    dp=2, pp=2, tp=2 (8 ranks):           tp_rank 0   tp_rank 1
        dp_rank 0   pp_rank 0 (stage 0)       0           1
                    pp_rank 1 (stage 1)       2           3
        dp_rank 1   pp_rank 0 (stage 0)       4           5
                    pp_rank 1 (stage 1)       6           7

Tensor-parallel partners are neighbours (on a real machine: the same node, the fastest link);
data-parallel replicas of one stage are furthest apart. The sub-communicators:

    grid.tp   ranks with the same (dp_rank, pp_rank)   e.g. {0, 1}     split name "tp"
    grid.pp   ranks with the same (dp_rank, tp_rank)   e.g. {0, 2}     split name "pp"
    grid.dp   ranks with the same (pp_rank, tp_rank)   e.g. {0, 4}     split name "dp"

Each is made with one ``comm.split`` (collective: every rank builds the grid at the same time),
so its messages also count on the world communicator's counters under its name.
"""
from dataclasses import dataclass

AXES = ("dp", "pp", "tp")


@dataclass(frozen=True)
class Coordinates:
    dp: int
    pp: int
    tp: int


def coordinates(rank, dp, pp, tp):
    """(dp_rank, pp_rank, tp_rank) of world ``rank`` on a dp x pp x tp grid (layout above)."""
    del dp  # the slowest axis: whatever is left after pp and tp
    return Coordinates(dp=rank // (pp * tp), pp=(rank // tp) % pp, tp=rank % tp)


def world_rank(coords, pp, tp):
    """The inverse of ``coordinates``."""
    return (coords.dp * pp + coords.pp) * tp + coords.tp


def check_degrees(world_size, dp, pp, tp):
    """The reason a dp x pp x tp grid cannot be laid on ``world_size`` ranks, or None."""
    for axis, degree in zip(AXES, (dp, pp, tp)):
        if not isinstance(degree, int) or degree < 1:
            return f"Grid: --{axis} must be an integer >= 1, got {degree!r}"
    if dp * pp * tp != world_size:
        return (f"Grid: dp x pp x tp = {dp} x {pp} x {tp} = {dp * pp * tp} ranks, "
                f"but the job has {world_size} (mpirun -n {dp * pp * tp}, or change the degrees)")
    return None


class Grid:
    """This rank's place in a dp x pp x tp grid over ``comm``, with one communicator per axis."""

    def __init__(self, comm, dp=1, pp=1, tp=1):
        problem = check_degrees(comm.size, dp, pp, tp)
        if problem:               # the same arguments on every rank: every rank raises this
            raise ValueError(f"rank {comm.rank} of {comm.size}: {problem}")
        self.world, self.degrees = comm, {"dp": dp, "pp": pp, "tp": tp}
        here = coordinates(comm.rank, dp, pp, tp)
        self.dp_rank, self.pp_rank, self.tp_rank = here.dp, here.pp, here.tp
        # One split per axis: the colour is the pair of the OTHER coordinates, the key our own.
        self.tp = comm.split(here.dp * pp + here.pp, here.tp, name="tp")
        self.pp = comm.split(here.dp * tp + here.tp, here.pp, name="pp")
        self.dp = comm.split(here.pp * tp + here.tp, here.dp, name="dp")
        # In grid.pp a rank's number is its stage (the split's key), so the neighbours are +-1.
        self.pp_prev = here.pp - 1 if here.pp > 0 else None
        self.pp_next = here.pp + 1 if here.pp < pp - 1 else None

    @property
    def is_first_stage(self):
        return self.pp_rank == 0

    @property
    def is_last_stage(self):
        return self.pp_rank == self.degrees["pp"] - 1

    def __repr__(self):
        d = self.degrees
        return (f"Grid(rank {self.world.rank} of {self.world.size}: dp {self.dp_rank}/{d['dp']}, "
                f"pp {self.pp_rank}/{d['pp']}, tp {self.tp_rank}/{d['tp']})")
