"""The point-to-point layer in the in-process world, and the pieces that need no world.

The checks in tests/mpi/comm_checks.py run here on 1 to 5 threaded ranks; the very same
checks run under real mpirun in tests/test_comm_mpi.py. Below them: what only the thread
world promises (ANY_SOURCE takes the earliest arrival; a receive that can never complete is
an error, not a hang), the tag registry, and algorithms.py (choose, the formulas, "auto").
"""
import itertools
import pathlib
import re
import sys
import time

import numpy
import pytest

import collectives
from collectives import ANY_SOURCE, ANY_TAG, Status, Tag, algorithms, costmodel
from collectives.algorithms import ALGORITHMS, DEFAULT_LINK, choose, lookup
from collectives.tags import TAG_MAX
from strategies.traffic import allreduce_bytes

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "mpi"))
import comm_checks  # noqa: E402

COLLECTIVES = pathlib.Path(collectives.__file__).parent


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("check", comm_checks.ALL_CHECKS, ids=lambda f: f.__name__)
def test_checks_in_process(check, p):
    collectives.spawn(check, p, timeout=20)


# -- what the thread world promises beyond MPI -------------------------------------------------
def test_any_source_takes_the_earliest_arrival_not_the_lowest_rank():
    def run(comm):
        if comm.rank == 1:  # rank 1 sends only after rank 2's message is in rank 0's mailbox
            comm.recv(numpy.empty(0), 2, Tag.CONTROL)
        if comm.rank in (1, 2):
            comm.send(numpy.full(1, comm.rank), 0)
        if comm.rank == 2:
            comm.send(numpy.empty(0), 1, Tag.CONTROL)
        if comm.rank != 0:
            return None
        comm.probe(1), comm.probe(2)                       # both are waiting: 2's came first
        buf = numpy.empty(1, int)
        return [comm.recv(buf, ANY_SOURCE).source for _ in range(2)]

    assert collectives.spawn(run, 3)[0] == [2, 1]


def _fails_with(fn, p, error, pattern, timeout=0.3):
    with pytest.raises(collectives.RankError) as info:
        collectives.spawn(fn, p, timeout=timeout)
    cause = info.value.__cause__
    assert isinstance(cause, error) and re.search(pattern, str(cause)), repr(cause)


def test_any_source_receive_fails_once_every_other_rank_has_exited():
    def only_rank_0_waits(comm):
        if comm.rank == 0:
            comm.recv(numpy.empty(1), ANY_SOURCE, Tag.GRADIENT)

    _fails_with(only_rank_0_waits, 3, collectives.RankExitedError,
                r"rank 0 of 3: recv\(source=ANY_SOURCE, tag=1, 8 B\): "
                r"rank 1 has returned, rank 2 has returned", timeout=60)  # at once, not timed out
    _fails_with(only_rank_0_waits, 1, collectives.RankExitedError, "there is no other rank")


def test_any_source_receive_with_everyone_waiting_is_a_deadlock_error():
    _fails_with(lambda comm: comm.recv(numpy.empty(1), ANY_SOURCE, ANY_TAG), 3,
                collectives.DeadlockError,
                r"recv\(source=ANY_SOURCE, tag=ANY_TAG, 8 B\): no message after 0.3 s")


def test_a_deadlock_is_reported_as_the_cause_even_when_rank_0_comes_late_to_it():
    """Ranks 1 and 2 time out first; rank 0 then sees them gone (RankExitedError): a
    consequence, so spawn names rank 1's DeadlockError."""
    def late_rank_0(comm):
        if comm.rank == 0:
            time.sleep(1.0)
        comm.recv(numpy.empty(1), ANY_SOURCE, ANY_TAG)

    with pytest.raises(collectives.RankError) as info:
        collectives.spawn(late_rank_0, 3, timeout=0.3)
    assert info.value.rank == 1 and isinstance(info.value.__cause__, collectives.DeadlockError)
    assert set(info.value.errors) == {1, 2}                      # the causes; rank 0's is a consequence


def test_probe_and_waitany_that_can_never_complete_are_errors():
    _fails_with(lambda comm: comm.rank == 0 and comm.probe(1, Tag.CONTROL), 2,
                collectives.RankExitedError, r"probe\(source=1, tag=5\): rank 1 has returned",
                timeout=60)

    def waits_on_two(comm):
        requests = [comm.irecv(numpy.empty(1), (comm.rank + 1) % 3),
                    comm.irecv(numpy.empty(2), (comm.rank + 2) % 3, Tag.CONTROL)]
        comm.waitany(requests)

    _fails_with(waits_on_two, 3, collectives.DeadlockError,
                r"waitany\(\[recv\(source=\d, tag=0, 8 B\), recv\(source=\d, tag=5, 16 B\)\]\)")


def test_a_request_that_is_never_satisfied_is_an_error_on_wait_not_a_hang():
    def run(comm):
        request = comm.irecv(numpy.empty(1), 1 - comm.rank, Tag.PARAMETERS)
        assert not request.test()
        request.wait()

    _fails_with(run, 2, collectives.DeadlockError, r"recv\(source=\d, tag=2, 8 B\): no message")


def test_minus_one_is_no_longer_the_last_rank():
    _fails_with(lambda comm: comm.recv(numpy.empty(1), -1), 3, ValueError,
                r"rank \d of 3: recv: peer -1 is not a rank of this communicator \(0 .. 2")


def test_sub_communicators_have_their_own_mailbox_matching():
    """A message sent on a split is not received by the same (source, tag) on the parent."""
    def run(comm):
        sub = comm.split(0, name="pair")
        if comm.rank == 0:
            sub.send(numpy.array([1.0]), 1)
            comm.send(numpy.array([2.0]), 1)
            return None
        got = numpy.empty(1)
        comm.recv(got, 0)
        return float(got[0])

    assert collectives.spawn(run, 2)[1] == 2.0, "the parent took the split's message"


# -- tags ----------------------------------------------------------------------------------------
def test_tags_are_distinct_in_range_and_the_library_keeps_its_own():
    values = [tag.value for tag in Tag]
    assert len(set(values)) == len(values) and Tag.DATA == 0
    assert all(0 <= v <= TAG_MAX for v in values) and ANY_TAG not in values
    library = {Tag.BARRIER, Tag.CHECK, Tag.SPLIT}
    assert min(library) > max(set(Tag) - library) + 1000


def test_no_tag_is_a_bare_number_in_collectives():
    """Tags come from the registry: no ``tag=7`` and no ``SOMETHING_TAG`` constant elsewhere."""
    bare = re.compile(r"\btag\s*=\s*\d|\b(?!ANY_TAG\b)[A-Z_]+_TAG\b")
    offenders = [f"{path.name}:{i}: {line.strip()}"
                 for path in sorted(COLLECTIVES.glob("*.py")) if path.name != "tags.py"
                 for i, line in enumerate(path.read_text().splitlines(), 1) if bare.search(line)]
    assert offenders == []


# -- algorithms.py ------------------------------------------------------------------------------
LINKS = [DEFAULT_LINK, costmodel.LinkModel(1e-5, 1e-9), costmodel.LinkModel(0.0, 1e-9, 1e-10),
         costmodel.LinkModel(1.0, 1e-12)]


@pytest.mark.parametrize("link", LINKS)
def test_choose_is_the_argmin_of_the_predicted_seconds(link):
    for p, nbytes in itertools.product([1, 2, 3, 4, 5, 8, 16], [0, 8, 1 << 10, 1 << 17, 1 << 26]):
        name = choose(p, nbytes, link)
        times = {n: a.seconds(p, nbytes, link) for n, a in ALGORITHMS.items() if n != "mpi"}
        assert name != "mpi" and times[name] == min(times.values()), (p, nbytes, name, times)
        assert [n for n in times if times[n] == times[name]][0] == name, "ties: the first"


def test_default_link_switches_to_the_ring_where_the_4_rank_benchmark_does():
    """With DEFAULT_LINK, 4 ranks: recursive doubling up to 512 KiB, the ring from 1 MiB
    (benchmarks/results/collectives.json on the 2-core machine: the ring is the fastest
    hand-written one from 512 KiB - 1 MiB up)."""
    assert {choose(4, 1 << k) for k in range(10, 19)} == {"recursive-doubling"}
    assert {choose(4, 1 << k) for k in range(21, 27)} == {"ring"}
    assert len({choose(4, 1 << 12, link) for link in LINKS}) >= 2, "the link changes the choice"


def test_a_measured_latency_replaces_the_alpha_terms_of_its_algorithm_only():
    """seconds = measured + (formula(n) - formula(0)): the byte terms stay the model's."""
    measured = costmodel.LinkModel(2e-5, 1e-9, 1e-10, latency=(("tree", 3e-5), ("recursive-doubling", 9e-5)))
    plain = costmodel.LinkModel(2e-5, 1e-9, 1e-10)
    for nbytes in (0, 1 << 10, 1 << 20):
        for name, fixed in (("tree", 3e-5), ("recursive-doubling", 9e-5)):
            a = ALGORITHMS[name]
            assert a.seconds(4, nbytes, measured) == pytest.approx(
                fixed + a.seconds(4, nbytes, plain) - a.seconds(4, 0, plain), rel=1e-12)
        assert ALGORITHMS["ring"].seconds(4, nbytes, measured) == ALGORITHMS["ring"].seconds(4, nbytes, plain)
    assert choose(4, 1 << 10, plain) == "recursive-doubling"          # 2 alphas against the tree's 4
    assert choose(4, 1 << 10, measured) == "tree"                      # measured: the tree is cheaper


def test_measure_latencies_gives_every_rank_the_same_numbers():
    tables = collectives.spawn(lambda comm: algorithms.measure_latencies(comm, repeats=3, warmup=1), 4)
    assert all(t == tables[0] for t in tables)
    assert set(tables[0]) == {"naive", "tree", "recursive-doubling", "ring"} and min(tables[0].values()) > 0


def test_costmodel_predict_and_strategies_traffic_read_the_one_table():
    for name, algorithm in ALGORITHMS.items():
        for p, nbytes in itertools.product([1, 3, 4, 6], [0, 100, 4096]):
            assert allreduce_bytes(name, p, nbytes) == algorithm.bytes_sent(p, nbytes)
            if name != "mpi":
                assert costmodel.predict(name, p, nbytes, DEFAULT_LINK) == \
                    algorithm.seconds(p, nbytes, DEFAULT_LINK)
    assert allreduce_bytes("mpi", 4, 100) is None
    assert allreduce_bytes("recursive-doubling", 6, 60) == (4 * 2 + 2 * 2) / 6 * 60


def test_algorithm_names_use_hyphens_and_an_underscore_gets_a_hint():
    assert list(ALGORITHMS) == ["naive", "tree", "recursive-doubling", "ring", "mpi"]
    with pytest.raises(ValueError, match=r"'recursive_doubling' \(did you mean 'recursive-doub"):
        lookup("recursive_doubling")
    assert collectives.get_algorithm(collectives.ring_allreduce) is collectives.ring_allreduce
    assert collectives.get_algorithm("recursive-doubling") is \
        collectives.recursive_doubling_allreduce
    with pytest.raises(ValueError, match="no cost model for 'mpi'"):
        ALGORITHMS["mpi"].seconds(4, 8, DEFAULT_LINK)


def test_status_is_a_value():
    assert Status(1, Tag.GRADIENT, 8) == Status(1, 1, 8)
    with pytest.raises(AttributeError):
        Status(1, 1, 8).source = 2


def test_spawn_names_the_rank_that_raised_not_the_one_that_waited_for_it_in_vain():
    """Rank 2 raises; rank 0, waiting on ANY_SOURCE while rank 1 still lives, can only time out.
    The RankError names rank 2 (the cause), not rank 0 (a consequence)."""
    def on(comm):
        if comm.rank == 0:
            comm.recv(numpy.empty(1), ANY_SOURCE, Tag.GRADIENT)
        elif comm.rank == 1:
            comm.recv(numpy.empty(1), 0, Tag.PARAMETERS)               # waits on rank 0
        else:
            raise ValueError("rank 2 fails on purpose")

    with pytest.raises(collectives.RankError, match="rank 2 of 3 raised ValueError") as failed:
        collectives.spawn(on, 3, timeout=0.5)
    assert isinstance(failed.value.__cause__, ValueError)
