"""The process grid (strategies/grid.py), in the in-process world: every factorisation of
1, 2, 4, 6 and 8 ranks into dp x pp x tp, the layout, each axis's communicator, and the errors."""
import itertools

import numpy as np
import pytest

import collectives
from strategies.grid import Coordinates, Grid, coordinates, world_rank


def factorisations(n):
    return [(dp, pp, tp) for dp, pp, tp in itertools.product(range(1, n + 1), repeat=3) if dp * pp * tp == n]


CASES = [(n, *f) for n in (1, 2, 4, 6, 8) for f in factorisations(n)]


def members(comm, world):
    """The world ranks in ``comm``, in ``comm``'s rank order (one all-reduce of a one-hot table)."""
    table = np.zeros((comm.size, world.size), np.int64)
    table[comm.rank, world.rank] = 1
    table = collectives.allreduce(comm, table, "ring", "sum", check=False)
    return [int(np.flatnonzero(row)[0]) for row in table]


@pytest.mark.parametrize("n, dp, pp, tp", CASES)
def test_every_factorisation_lays_out_ranks_and_splits_each_axis(n, dp, pp, tp):
    def on(comm):
        grid = Grid(comm, dp=dp, pp=pp, tp=tp)
        return dict(coords=(grid.dp_rank, grid.pp_rank, grid.tp_rank),
                    sizes=(grid.dp.size, grid.pp.size, grid.tp.size),
                    ranks=(grid.dp.rank, grid.pp.rank, grid.tp.rank),
                    dp=members(grid.dp, comm), pp=members(grid.pp, comm), tp=members(grid.tp, comm),
                    prev=grid.pp_prev, next=grid.pp_next, first=grid.is_first_stage, last=grid.is_last_stage)

    views = collectives.spawn(on, n)
    assert sorted(v["coords"] for v in views) == sorted(itertools.product(range(dp), range(pp), range(tp)))
    for rank, v in enumerate(views):
        d, p, t = v["coords"]
        assert rank == (d * pp + p) * tp + t                         # tp fastest, then pp, then dp
        assert v["sizes"] == (dp, pp, tp) and v["ranks"] == (d, p, t)
        assert v["tp"] == [(d * pp + p) * tp + j for j in range(tp)]      # same (dp, pp)
        assert v["pp"] == [(d * pp + j) * tp + t for j in range(pp)]      # same (dp, tp), by stage
        assert v["dp"] == [(j * pp + p) * tp + t for j in range(dp)]      # same (pp, tp)
        assert v["prev"] == (p - 1 if p > 0 else None) and v["next"] == (p + 1 if p < pp - 1 else None)
        assert v["first"] == (p == 0) and v["last"] == (p == pp - 1)


def test_coordinates_and_world_rank_are_inverse():
    for rank in range(24):
        c = coordinates(rank, 2, 3, 4)
        assert world_rank(c, 3, 4) == rank
    assert coordinates(6, 2, 2, 2) == Coordinates(dp=1, pp=1, tp=0)     # the picture in grid.py


def test_traffic_on_an_axis_counts_on_the_world_under_its_name():
    def on(comm):
        grid = Grid(comm, dp=2, pp=2)
        comm.reset_counters()
        collectives.allreduce(grid.dp, np.ones(10), "ring", "sum", check=False)   # 2 ranks: 80 B each way
        return comm.counters.bytes_sent, comm.traffic()

    for sent, table in collectives.spawn(on, 4):
        assert sent == 80
        assert table["world/dp"]["bytes_sent"] == 80 and table["world/pp"]["bytes_sent"] == 0


@pytest.mark.parametrize("degrees, message", [
    (dict(dp=3), "dp x pp x tp = 3 x 1 x 1 = 3 ranks, but the job has 4"),
    (dict(dp=2, pp=0, tp=2), "--pp must be an integer >= 1, got 0"),
    (dict(dp=2, tp=-2), "--tp must be an integer >= 1"),
])
def test_bad_degrees_are_one_clear_error_on_every_rank(degrees, message):
    with pytest.raises(collectives.RankError) as failed:
        collectives.spawn(lambda comm: Grid(comm, **degrees), 4)
    errors = failed.value.errors
    assert sorted(errors) == [0, 1, 2, 3]                             # every rank, none waits
    assert all(isinstance(e, ValueError) and message in str(e) for e in errors.values())
