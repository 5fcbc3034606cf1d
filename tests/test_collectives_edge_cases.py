"""Bad or unusual calls to the collectives fail clearly (collectives/guard.py), never silently.

Byte-swapped arrays give the right answer; a root outside [0, p), a list, tuple, scalar or
Tensor, or two threads on one communicator raise a clear error on the calling rank, before
any message, so no rank is left waiting. The timeout API (collectives/watchdog.py) is
checked here without MPI; its mpirun test is tests/test_watchdog_mpi.py.
"""
import pathlib
import subprocess
import sys
import threading
import time

import numpy
import pytest

import collectives
from collectives import watchdog
from engine.tensor import Tensor

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
from launch import ROOT, mpirun_path, run_mpi  # noqa: E402

ALGORITHMS = ["naive", "tree", "recursive-doubling", "ring"]
ROOTED = [collectives.broadcast, collectives.reduce, collectives.gather, collectives.scatter]
ARRAY_IN = ROOTED + [collectives.allreduce, collectives.ring_allreduce, collectives.tree_allreduce,
                     collectives.naive_allreduce, collectives.recursive_doubling_allreduce,
                     collectives.mpi_allreduce, collectives.reduce_scatter, collectives.all_gather]


def cause_of(fn, p, timeout=5):
    """The exception of the first failing rank of ``spawn(fn, p)`` (and that every rank failed)."""
    with pytest.raises(collectives.RankError) as info:
        collectives.spawn(fn, p, timeout=timeout)
    return info.value.__cause__, info.value.errors


# -- byte order ---------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [2, 3, 4])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_big_endian_array_on_one_rank_sums_right_on_every_rank(algorithm, p):
    def run(comm):
        x = numpy.arange(4, dtype=">f8" if comm.rank == 0 else "<f8")
        in_place = numpy.arange(4, dtype=">f8")
        collectives.allreduce(comm, in_place, algorithm, out=in_place)
        return collectives.allreduce(comm, x, algorithm), in_place

    for y, in_place in collectives.spawn(run, p):
        assert y.dtype.isnative and numpy.array_equal(y, p * numpy.arange(4.0))
        assert in_place.dtype == ">f8" and numpy.array_equal(in_place, p * numpy.arange(4.0))


def test_byte_swapped_arrays_travel_right_in_the_other_collectives():
    def run(comm):
        order = ">" if comm.rank == 1 else "<"
        x = numpy.arange(6, dtype=order + "i4").reshape(3, 2) + comm.rank
        return (collectives.broadcast(comm, x, 1), collectives.gather(comm, x, 0),
                collectives.all_gather(comm, x), collectives.scatter(comm, x, 1),
                collectives.reduce_scatter(comm, x),
                collectives.bucketed_allreduce(comm, [x, x[0].astype(order + "f8")], 16))

    results = collectives.spawn(run, 3)
    inputs = [numpy.arange(6).reshape(3, 2) + r for r in range(3)]
    assert numpy.array_equal(results[0][1], numpy.stack(inputs))
    for rank, (b, _, g, s, rs, (whole, first_row)) in enumerate(results):
        assert numpy.array_equal(b, inputs[1]) and numpy.array_equal(g, numpy.stack(inputs))
        assert numpy.array_equal(s, inputs[1][rank])
        assert numpy.array_equal(rs, sum(inputs).reshape(-1)[2 * rank:2 * rank + 2])
        assert numpy.array_equal(whole, sum(inputs)) and numpy.array_equal(first_row, [3, 6])


# -- roots --------------------------------------------------------------------------------------
@pytest.mark.parametrize("root", [-1, 3, 7, 1.0, True])
@pytest.mark.parametrize("fn", ROOTED, ids=lambda f: f.__name__)
def test_a_root_outside_the_communicator_raises_on_every_rank(fn, root):
    cause, errors = cause_of(lambda comm: fn(comm, numpy.zeros((3, 2)), root), 3)
    assert sorted(errors) == [0, 1, 2] and all(isinstance(e, ValueError) for e in errors.values())
    assert f"{fn.__name__}: root={root!r} is not a rank of this communicator of size 3" \
        in str(cause)


def test_root_may_be_given_by_keyword_or_as_a_numpy_integer():
    def run(comm):
        x = numpy.full(2, comm.rank)
        with pytest.raises(ValueError, match="root=-2"):
            collectives.reduce(comm, x, root=-2)
        return collectives.broadcast(comm, x, root=numpy.int64(1))

    assert all((y == 1).all() for y in collectives.spawn(run, 2))


# -- what is not an array -----------------------------------------------------------------------
@pytest.mark.parametrize("x", [[1.0, 2.0], (1.0, 2.0), 3.0, numpy.float64(3.0),
                               Tensor(numpy.ones(2))], ids=lambda x: type(x).__name__)
@pytest.mark.parametrize("fn", ARRAY_IN, ids=lambda f: f.__name__)
def test_a_non_array_is_a_type_error_naming_the_function_and_the_type(fn, x):
    cause, errors = cause_of(lambda comm: fn(comm, x), 2)
    assert sorted(errors) == [0, 1] and isinstance(cause, TypeError)
    assert str(cause).startswith(f"{fn.__name__}: expected a NumPy or CuPy array, "
                                 f"got {type(x).__name__}; pass numpy.asarray(x)")


def test_bucketed_allreduce_names_what_is_not_an_array():
    cause, _ = cause_of(lambda comm: collectives.bucketed_allreduce(comm, [numpy.ones(2), [1.0]]),
                        2)
    assert "bucketed_allreduce: expected a NumPy or CuPy array, got list" in str(cause)
    cause, _ = cause_of(lambda comm: collectives.bucketed_allreduce(comm, numpy.ones(2)), 2)
    assert "bucketed_allreduce: expected a list of arrays, got ndarray" in str(cause)


# -- threads ------------------------------------------------------------------------------------
def test_a_second_thread_in_a_collective_on_the_same_comm_raises():
    """Rank 0's thread "first" is inside an all-reduce (rank 1 holds back); rank 0's main
    thread then calls one on the same comm and must get the RuntimeError at once."""
    second_done = threading.Event()

    def run(comm):
        if comm.rank == 1:
            assert second_done.wait(10)
            return collectives.allreduce(comm, numpy.ones(3))
        got = {}
        first = threading.Thread(target=lambda: got.update(y=collectives.allreduce(
            comm, numpy.ones(3))), name="first", daemon=True)
        first.start()
        while comm._collective_owner is None:
            time.sleep(0.01)
        try:
            with pytest.raises(RuntimeError) as info:
                collectives.ring_allreduce(comm, numpy.ones(3))
        finally:
            second_done.set()
        first.join(10)
        return str(info.value), got["y"]

    (message, y), other = collectives.spawn(run, 2, timeout=10)
    assert numpy.array_equal(y, [2, 2, 2]) and numpy.array_equal(other, [2, 2, 2])
    assert "ring_allreduce: thread 'rank 0' entered a collective on communicator 'world'" in message
    assert ("while thread 'first' is inside allreduce on it; use one communicator per thread"
            in message)


def test_one_thread_after_another_and_split_comms_per_thread_are_fine():
    def run(comm):
        mine = [comm.split(0, name=f"thread {i}") for i in range(2)]
        results = [None, None]
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, collectives.allreduce(mine[i], numpy.full(2, i)))) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        later = threading.Thread(target=lambda: collectives.allreduce(comm, numpy.ones(1)))
        later.start()
        later.join(10)
        return results + [collectives.allreduce(comm, numpy.ones(1))]

    for a, b, c in collectives.spawn(run, 3, timeout=10):
        assert (a == 0).all() and (b == 3).all() and (c == 3).all()


# -- the timeout API ----------------------------------------------------------------------------
def test_set_timeout_validates_and_sets_the_default_of_spawn():
    with pytest.raises(ValueError, match="seconds must be >= 0 or None"):
        collectives.set_timeout(-1)
    try:
        collectives.set_timeout(0.2)
        assert collectives.get_timeout() == 0.2
        cause, _ = cause_of(lambda comm: comm.recv(numpy.empty(1), (comm.rank + 1) % 2), 2,
                            timeout=None)
        assert isinstance(cause, collectives.DeadlockError) and "after 0.2 s" in str(cause)
    finally:
        collectives.set_timeout(0)
    assert collectives.get_timeout() is None and watchdog.spawn_timeout(None) == 30.0


STUCK = """
import time, collectives
from collectives.watchdog import watched
class Comm:
    name, rank, size, world_rank, world_size = "dp", 1, 2, 3, 4
    _collective_owner = ("MainThread", "ring_allreduce")
    @watched(lambda comm, source: (comm, f"recv(source={source}, tag=0)"))
    def recv(self, source):
        time.sleep(30)
collectives.set_timeout(0.5)
Comm().recv(0)
"""


def test_the_watchdog_prints_one_line_and_exits_with_3():
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-c", STUCK], cwd=ROOT, capture_output=True, text=True,
                         timeout=20)
    assert run.returncode == watchdog.EXIT_CODE and time.monotonic() - start < 10
    assert run.stderr.count("\n") == 1 and run.stderr.startswith(
        "mpigrad watchdog: rank 3 of 4: no progress for ")
    assert ("s (timeout 0.5 s) in recv(source=0, tag=0) on communicator 'dp' (its rank 1 of 2) "
            "during ring_allreduce - a rank may be stopped or hung; aborting the job") in run.stderr


@pytest.mark.mpi
@pytest.mark.timeout(90)
@pytest.mark.skipif(mpirun_path() is None, reason="needs mpirun (pip install mpich)")
def test_byte_order_and_roots_under_mpirun():
    result = run_mpi(ROOT / "tests" / "mpi" / "hang_checks.py", 3, "--timeout", 0, "--edge",
                     timeout=60)
    assert "PASS" in result.stdout
