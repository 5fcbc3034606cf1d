"""Collectives in the in-process world (threads), plus the pieces that need no world at all.

The checks in tests/mpi/collective_checks.py run here on 1 to 8 threaded ranks, and the very
same checks run under real mpirun in tests/test_collectives_mpi.py.
Tolerance: integers exact; floats within 4 p eps(dtype) of the NumPy reduction.
"""
import pathlib
import sys

import numpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import collectives
from collectives import costmodel
from collectives.chunks import chunk_bounds, chunk_sizes
from collectives.trace import step_table
from engine.backend import cupy_available

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
import collective_checks  # noqa: E402

WORLD_SIZES = [1, 2, 3, 4, 5, 8]


@pytest.mark.parametrize("p", WORLD_SIZES)
@pytest.mark.parametrize("check", collective_checks.ALL_CHECKS, ids=lambda f: f.__name__)
def test_checks_in_process(check, p):
    collectives.spawn(check, p)


# -- chunks ------------------------------------------------------------------------------------
@given(n=st.integers(0, 200), p=st.integers(1, 17))
def test_chunks_cover_n_with_sizes_differing_by_at_most_one(n, p):
    sizes = chunk_sizes(n, p)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes)[::-1]
    bounds = chunk_bounds(n, p)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(hi == lo for (_, hi), (lo, _) in zip(bounds, bounds[1:]))


def test_chunk_example_from_docstring():
    assert chunk_sizes(10, 4) == [3, 3, 2, 2] and chunk_sizes(2, 4) == [1, 1, 0, 0]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 50), p=st.integers(1, 6),
       algorithm=st.sampled_from(collective_checks.HAND_WRITTEN))
def test_any_length_any_world_size_sums_exactly(n, p, algorithm):
    inputs = [numpy.arange(n, dtype=numpy.int64) * (r + 1) - r for r in range(p)]
    results = collectives.spawn(lambda comm: collectives.allreduce(comm, inputs[comm.rank],
                                                                   algorithm), p)
    for y in results:
        assert numpy.array_equal(y, sum(inputs))


# -- the in-process world never hangs ----------------------------------------------------------
def test_deadlock_becomes_an_error_naming_the_rank_and_the_receive():
    def everyone_receives_first(comm):
        comm.recv(numpy.empty(2), (comm.rank + 1) % comm.size)

    # Which rank times out first depends on the scheduler; the others then see it exit.
    with pytest.raises(collectives.RankError,
                       match=r"rank (\d) of 3: recv\(source=\d, tag=0, 16 B\): no message") as info:
        collectives.spawn(everyone_receives_first, 3, timeout=0.2)
    assert isinstance(info.value.__cause__, collectives.DeadlockError)


def test_exception_on_one_rank_is_reraised_with_its_rank_and_does_not_hang_the_others():
    def rank_1_fails(comm):
        if comm.rank == 1:
            raise KeyError("boom")
        comm.recv(numpy.empty(1), 1)  # would wait for ever on rank 1

    with pytest.raises(collectives.RankError, match="rank 1 of 3 raised KeyError") as info:
        collectives.spawn(rank_1_fails, 3, timeout=60)  # RankExitedError, not the timeout
    assert list(info.value.errors) == [1] and isinstance(info.value.__cause__, KeyError)


def test_bad_input_error_reaches_every_rank():
    with pytest.raises(collectives.RankError) as info:
        collectives.spawn(lambda comm: collectives.allreduce(comm, numpy.ones(3 + comm.rank)), 4)
    assert sorted(info.value.errors) == [0, 1, 2, 3]
    assert all(isinstance(e, ValueError) and "number of elements" in str(e)
               for e in info.value.errors.values())


def test_message_of_the_wrong_size_is_an_error():
    def mismatched(comm):
        if comm.rank == 0:
            comm.send(numpy.zeros(3), 1)
        else:
            comm.recv(numpy.zeros(4), 0)

    with pytest.raises(collectives.RankError, match="the message has 24 B"):
        collectives.spawn(mismatched, 2)


def test_results_come_back_in_rank_order():
    assert collectives.spawn(lambda comm: comm.rank * 10, 4) == [0, 10, 20, 30]


# -- API details -------------------------------------------------------------------------------
def test_unknown_algorithm_and_non_numeric_dtype_are_clear_errors():
    with pytest.raises(collectives.RankError, match="unknown all-reduce algorithm 'rng'"):
        collectives.spawn(lambda comm: collectives.allreduce(comm, numpy.ones(2), "rng"), 2)
    with pytest.raises(collectives.RankError, match="numeric arrays, got dtype bool"):
        collectives.spawn(lambda comm: collectives.allreduce(comm, numpy.ones(2, bool)), 2)
    with pytest.raises(collectives.RankError, match="has no MPI library Allreduce"):
        collectives.spawn(lambda comm: collectives.allreduce(comm, numpy.ones(2), "mpi"), 2)


def test_op_enum_function_and_names_are_interchangeable():
    def run(comm):
        x = numpy.full(3, float(comm.rank))
        return (collectives.allreduce(comm, x, collectives.ring_allreduce, collectives.Op.MEAN),
                collectives.allreduce(comm, x, "tree", "max"))

    for mean, largest in collectives.spawn(run, 4):
        assert (mean == 1.5).all() and (largest == 3).all()


def test_integer_mean_is_float64():
    results = collectives.spawn(
        lambda comm: collectives.allreduce(comm, numpy.array([comm.rank], numpy.int32), op="mean"), 4)
    assert results[0].dtype == numpy.float64 and results[0][0] == 1.5


def test_step_table_shows_the_ring_schedule():
    def traced(comm):
        comm.trace = collectives.Trace()
        collectives.ring_allreduce(comm, numpy.ones(8), check=False)
        return comm.trace

    lines = step_table(collectives.spawn(traced, 4))
    assert len(lines) == 1 + 2 * 3
    assert lines[1].split()[:3] == ["reduce-scatter", "0", "c3->"]  # rank 0 sends chunk 3 first


def test_plan_buckets_never_mixes_dtypes_and_respects_the_size():
    arrays = [numpy.zeros(12), numpy.zeros(4), numpy.zeros(8), numpy.zeros(2),
              numpy.zeros(3, numpy.int32), numpy.zeros(40)]
    assert collectives.plan_buckets(arrays, 128) == [[0, 1], [2, 3], [4], [5]]


# -- cost model --------------------------------------------------------------------------------
def test_cost_model_crossover_tree_ring_is_0_8_alpha_over_beta_for_4_ranks():
    link = costmodel.LinkModel(alpha=1e-5, beta=1e-9)
    crossover = 0.8 * link.alpha / link.beta
    assert costmodel.predict("tree", 4, crossover, link) == pytest.approx(
        costmodel.predict("ring", 4, crossover, link))
    assert costmodel.predict("tree", 4, crossover / 2, link) < costmodel.predict("ring", 4, crossover / 2, link)
    assert costmodel.predict("tree", 4, crossover * 2, link) > costmodel.predict("ring", 4, crossover * 2, link)


def test_cost_model_ring_bandwidth_term_tends_to_2_n_beta():
    link = costmodel.LinkModel(alpha=0.0, beta=1.0)
    assert costmodel.predict("ring", 1000, 1.0, link) == pytest.approx(2 * 999 / 1000)
    assert costmodel.predict("naive", 4, 1.0, link) == 6.0


def test_ping_pong_measures_a_positive_latency_in_threads():
    alphas = collectives.spawn(lambda comm: costmodel.ping_pong(comm, 8, repeats=5), 2)
    assert alphas[0] == alphas[1] > 0


# -- CuPy --------------------------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and an NVIDIA GPU")
@pytest.mark.parametrize("cuda_aware", [True, False])
def test_cupy_arrays_in_cupy_arrays_out(cuda_aware):
    import cupy

    def run(comm):
        comm.cuda_aware = cuda_aware  # False: the host-staging path
        x = cupy.arange(10, dtype=cupy.float32) * (comm.rank + 1)
        return collectives.allreduce(comm, x, "ring")

    for y in collectives.spawn(run, 3):
        assert isinstance(y, cupy.ndarray)
        assert cupy.asnumpy(y).tolist() == (numpy.arange(10) * 6).tolist()
