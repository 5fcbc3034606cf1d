"""Checks of the point-to-point layer (any-source receives, requests, probes, tags, counters,
algorithm="auto"), written once against the Comm interface.

    mpirun -n 4 python -m mpi4py tests/mpi/comm_checks.py      # prints "PASS on 4 MPI ranks"

The same functions run in the in-process world (tests/test_comm.py, via spawn) and under real
mpirun (tests/test_comm_mpi.py runs this file). Each ``check_*(comm)`` runs on every rank,
raises AssertionError on a failure and ends with a barrier, so that no check's messages can
be taken by the next one. Only what MPI guarantees is checked here (the in-process world's
own promises, like "ANY_SOURCE takes the earliest arrival", are in tests/test_comm.py).
"""
import itertools
import pathlib
import sys
import time

import numpy

if __name__ == "__main__":
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root

import collectives  # noqa: E402
from collectives import ANY_SOURCE, ANY_TAG, Status, Tag  # noqa: E402
from collectives.algorithms import ALGORITHMS, choose  # noqa: E402
from collectives.costmodel import LinkModel  # noqa: E402
from collective_checks import HAND_WRITTEN, expected_traffic  # noqa: E402  (tests/mpi: sys.path[0])


def _poll(condition, what, seconds=20.0):  # AssertionError if not true after ``seconds``
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: still not done after {seconds} s"
        time.sleep(0.001)


def check_any_source_receive_reports_the_real_source(comm):
    """Rank 0 takes one message from every other rank with ANY_SOURCE; the Status, the
    counters and the trace all name the rank it really came from."""
    p, comm.trace, seen = comm.size, collectives.Trace(), []
    comm.counters.reset()
    if comm.rank == 0:
        for _ in range(p - 1):
            buf = numpy.full(3, -1.0)
            status = comm.recv(buf, ANY_SOURCE, Tag.CONTROL)
            assert status == Status(status.source, Tag.CONTROL, 24), status
            assert (buf == status.source).all(), f"{buf} did not come from {status.source}"
            seen.append(status.source)
        assert sorted(seen) == list(range(1, p)), seen
        assert [e.peer for e in comm.trace.events] == seen, "the trace names the real sources"
        assert (comm.counters.messages_received, comm.counters.bytes_received) == \
            (p - 1, 24 * (p - 1)), comm.counters
    else:
        comm.send(numpy.full(3, float(comm.rank)), 0, Tag.CONTROL)
    comm.trace = None
    comm.barrier()


def check_tags_select_and_any_tag_keeps_the_order(comm):
    """A receive for one tag skips the others; ANY_TAG takes one sender's messages in order."""
    if comm.size >= 2 and comm.rank == 1:
        requests = [comm.isend(numpy.array([k], numpy.int64), 0, tag)
                    for k, tag in enumerate([Tag.GRADIENT, Tag.PARAMETERS, Tag.GRADIENT, 9])]
        assert comm.waitall(requests) == [None] * 4, "a send's Status is None"
    elif comm.size >= 2 and comm.rank == 0:
        got = numpy.zeros(1, numpy.int64)
        status = comm.recv(got, 1, Tag.PARAMETERS)            # overtakes the earlier GRADIENT
        assert (got[0], status.tag) == (1, Tag.PARAMETERS), (got, status)
        tags = []
        for expected in [0, 2, 3]:                             # the rest, in the order sent
            status = comm.recv(got, 1, ANY_TAG)
            assert got[0] == expected, f"ANY_TAG took message {got[0]}, expected {expected}"
            tags.append(status.tag)
        assert tags == [Tag.GRADIENT, Tag.GRADIENT, 9], tags
    comm.barrier()


def check_posted_receives_are_matched_in_posting_order(comm):
    """Ten receives posted at once from one sender, waited for in reverse: request k still
    gets message k (messages between a pair with one tag do not overtake each other)."""
    if comm.size >= 2 and comm.rank == 0:
        bufs = [numpy.full(1, -1, numpy.int64) for _ in range(10)]
        requests = [comm.irecv(buf, 1, Tag.ACTIVATION) for buf in bufs]
        statuses = [request.wait() for request in reversed(requests)][::-1]
        assert [int(buf[0]) for buf in bufs] == list(range(10)), [b[0] for b in bufs]
        assert all(s == Status(1, Tag.ACTIVATION, 8) for s in statuses), statuses
    elif comm.size >= 2 and comm.rank == 1:
        for k in range(10):
            comm.send(numpy.array([k], numpy.int64), 0, Tag.ACTIVATION)
    comm.barrier()


def check_waitany_serves_each_request_once(comm):
    """Rank 0 posts one receive per peer and serves them with waitany until all are done;
    every rank also checks waitall's statuses (None for the send)."""
    p, rank = comm.size, comm.rank
    right, left = (rank + 1) % p, (rank - 1) % p
    out, back = numpy.full(2, float(rank)), numpy.zeros(2)
    statuses = comm.waitall([comm.isend(out, right), comm.irecv(back, left)])
    assert statuses == [None, Status(left, Tag.DATA, 16)] and (back == left).all(), statuses
    if rank == 0:
        bufs = {peer: numpy.zeros(peer + 1) for peer in range(1, p)}   # one size per peer
        requests = [comm.irecv(bufs[peer], peer, Tag.GRADIENT) for peer in range(1, p)]
        served = []
        for _ in range(p - 1):
            index, status = comm.waitany(requests)
            assert status == Status(index + 1, Tag.GRADIENT, 8 * (index + 2)), (index, status)
            assert (bufs[index + 1] == index + 1).all()
            served.append(index)
        assert sorted(served) == list(range(p - 1)), served
        _raises_value_error(lambda: comm.waitany(requests), "all done already")
    else:
        comm.send(numpy.full(rank + 1, float(rank)), 0, Tag.GRADIENT)
    comm.barrier()


def check_test_completes_a_request_only_when_the_message_is_there(comm):
    if comm.size < 2 or comm.rank > 1:
        comm.barrier()
        return
    go = numpy.zeros(1, numpy.uint8)
    if comm.rank == 0:
        data = numpy.zeros(4, numpy.int32)
        request = comm.irecv(data, 1, Tag.CONTROL)
        assert not request.test() and not request.done, "test() before rank 1 has sent"
        comm.send(go, 1, Tag.CONTROL)                      # now rank 1 may send
        _poll(request.test, "test() of a message that was sent")
        assert request.status == Status(1, Tag.CONTROL, 16) and list(data) == [1, 2, 3, 4]
        assert request.wait() == request.status, "wait() after test() returns the same Status"
    else:
        comm.recv(go, 0, Tag.CONTROL)
        comm.send(numpy.array([1, 2, 3, 4], numpy.int32), 0, Tag.CONTROL)
    comm.barrier()


def check_probe_and_iprobe_look_without_receiving(comm):
    """iprobe: None before the send; probe waits for it; neither takes it; probe learns the
    size, so a receive of unknown length can allocate its buffer."""
    if comm.size < 2 or comm.rank > 1:
        comm.barrier()
        return
    if comm.rank == 0:
        assert comm.iprobe(1, Tag.PARAMETERS) is None, "iprobe before rank 1 sent"
        comm.send(numpy.zeros(1, numpy.uint8), 1, Tag.CONTROL)           # go
        status = comm.probe(ANY_SOURCE, Tag.PARAMETERS)
        assert status == Status(1, Tag.PARAMETERS, 7 * 8), status
        assert comm.iprobe(1, ANY_TAG) == status, "probe must not take the message"
        buf = numpy.empty(status.nbytes // 8)                 # sized by the probe
        assert comm.recv(buf, status.source, status.tag) == status and (buf == 7).all()
        _poll(lambda: comm.iprobe(1, Tag.CONTROL) is not None, "second message")
        assert comm.iprobe(1, Tag.PARAMETERS) is None, "the received message is gone"
        comm.recv(numpy.empty(0), 1, Tag.CONTROL)
    else:
        comm.recv(numpy.zeros(1, numpy.uint8), 0, Tag.CONTROL)
        comm.send(numpy.full(7, 7.0), 0, Tag.PARAMETERS)
        comm.send(numpy.empty(0), 0, Tag.CONTROL)
    comm.barrier()


def _raises_value_error(call, *words):
    try:
        call()
    except ValueError as error:
        for word in words:
            assert word in str(error), f"{word!r} not in {error}"
    else:
        raise AssertionError(f"no ValueError (expected one mentioning {words})")


def check_peers_outside_the_communicator_are_errors(comm):
    """-1, p and ANY_SOURCE as a destination are ValueErrors naming rank, call and peer."""
    buf = numpy.zeros(1)
    calls = {"send": lambda peer: comm.send(buf, peer), "isend": lambda peer: comm.isend(buf, peer),
             "recv": lambda peer: comm.recv(buf, peer), "irecv": lambda peer: comm.irecv(buf, peer),
             "sendrecv": lambda peer: comm.sendrecv(buf, peer, buf, peer),
             "probe": comm.probe, "iprobe": comm.iprobe}
    for peer, (call, start) in itertools.product([-1, comm.size, comm.size + 5], calls.items()):
        _raises_value_error(lambda: start(peer), f"rank {comm.rank} of {comm.size}: {call}: "
                            f"peer {peer} is not a rank of this communicator")
    _raises_value_error(lambda: comm.send(buf, ANY_SOURCE), "send", f"peer {ANY_SOURCE}")
    _raises_value_error(lambda: comm.send(buf, 0, tag=-3), "send", "tag -3")
    _raises_value_error(lambda: comm.send(buf, 0, tag=ANY_TAG), "send", "tag -1")
    comm.barrier()


def _delta(before, after):
    return {path: {k: v - before.get(path, dict.fromkeys(row, 0))[k] for k, v in row.items()}
            for path, row in after.items()}


def _as_row(counts):  # (messages sent, bytes sent, messages received, bytes received)
    return dict(zip(["messages_sent", "bytes_sent", "messages_received", "bytes_received"], counts))


def check_counters_roll_up_into_the_parent(comm):
    """Traffic on world/dp/inner counts on inner, dp and world alike, exactly; on dp, on dp
    and world only; a counted=False comm's on itself only. Same-named siblings are summed;
    reset_counters goes down the tree, never up."""
    p, rank = comm.size, comm.rank
    dp = comm.split(rank % 2, name="dp")
    inner = dp.split(0, key=-dp.rank, name="inner")
    metrics = comm.split(0, name="metrics", counted=False)
    assert (comm.name, dp.name, inner.name, metrics.name) == ("world", "dp", "inner", "metrics")

    comm.reset_counters()
    n = 10 * inner.size + 3
    collectives.ring_allreduce(inner, numpy.zeros(n), check=False)
    own = _as_row(expected_traffic("ring", inner.rank, inner.size, n, 8))
    table = comm.traffic()
    assert set(table) == {"world", "world/dp", "world/dp/inner"}, table
    assert table["world"] == table["world/dp"] == table["world/dp/inner"] == own, (table, own)
    assert set(dp.traffic()) == {"dp", "dp/inner"}

    before = comm.traffic()
    collectives.tree_allreduce(dp, numpy.zeros(5), check=False)
    delta = _delta(before, comm.traffic())
    tree = _as_row(expected_traffic("tree", dp.rank, dp.size, 5, 8))
    assert delta == {"world": tree, "world/dp": tree, "world/dp/inner": _as_row([0] * 4)}, delta

    before = comm.traffic()
    collectives.tree_allreduce(metrics, numpy.zeros(5), check=False)
    assert comm.traffic() == before, "counted=False traffic reached the world's counters"
    assert _as_row(vars(metrics.counters).values()) == \
        _as_row(expected_traffic("tree", metrics.rank, p, 5, 8)), metrics.counters

    twin = comm.split(0, name="dp")                                     # a sibling, same name
    comm.reset_counters()
    collectives.naive_allreduce(twin, numpy.zeros(2), check=False)
    collectives.naive_allreduce(dp, numpy.zeros(2), check=False)
    summed = comm.traffic()["world/dp"]["bytes_sent"]
    assert summed == twin.counters.bytes_sent + dp.counters.bytes_sent == comm.counters.bytes_sent
    dp.reset_counters()
    assert (dp.counters.bytes_sent, inner.counters.bytes_sent) == (0, 0)
    assert comm.counters.bytes_sent == summed, "a child's reset must leave its parent's counts"
    comm.reset_counters()
    assert all(not any(row.values()) for row in comm.traffic().values()), comm.traffic()
    comm.barrier()


def check_auto_is_the_chosen_algorithm_bit_for_bit(comm):
    """"auto" gives the same bits and the same traffic as the algorithm choose() names, for
    the default link and for links that make each algorithm the choice."""
    p = comm.size
    links = [None, LinkModel(alpha=0.0, beta=1e-9), LinkModel(alpha=1.0, beta=1e-12)]
    for link in links:
        comm.link = link
        for n in [0, 1, 100, 5000]:
            x = numpy.random.default_rng([comm.rank, n]).uniform(-1, 1, n)
            name = choose(p, x.nbytes, link)
            comm.counters.reset()
            auto = collectives.allreduce(comm, x, "auto", check=False)
            auto_traffic = comm.traffic()["world"]
            comm.counters.reset()
            chosen = collectives.allreduce(comm, x, name, check=False)
            assert numpy.array_equal(auto, chosen), f"auto != {name} for n={n}"
            assert auto_traffic == comm.traffic()["world"], f"auto's traffic != {name}'s"
    comm.link = None
    comm.barrier()


def check_bytes_sent_formula_is_the_counted_mean(comm):
    """ALGORITHMS[name].bytes_sent(p, n) equals the counters' mean over ranks, exactly."""
    for name in HAND_WRITTEN:
        for n in [1, 7, 64]:
            comm.counters.reset()
            collectives.allreduce(comm, numpy.zeros(n), name, check=False)
            mine = numpy.array([float(comm.counters.bytes_sent)])
            mean = collectives.allreduce(comm, mine, "tree", "mean", check=False)[0]
            want = ALGORITHMS[name].bytes_sent(comm.size, 8 * n)
            assert abs(mean - want) <= 1e-9 * max(want, 1), f"{name} n={n}: {mean} != {want}"
    comm.barrier()


def check_wrong_size_from_any_source_is_an_error(comm):
    if comm.size >= 2 and comm.rank == 1:
        comm.send(numpy.arange(3.0), 0, Tag.CONTROL)
    elif comm.size >= 2 and comm.rank == 0:
        _raises_value_error(lambda: comm.recv(numpy.zeros(5), ANY_SOURCE, ANY_TAG),
                            "recv(source=ANY_SOURCE, tag=ANY_TAG, 40 B): the message has 24 B",
                            f"from rank 1, tag {int(Tag.CONTROL)}")
    comm.barrier()


ALL_CHECKS = [check for name, check in list(globals().items()) if name.startswith("check_")]


if __name__ == "__main__":
    world = collectives.world()
    for check in ALL_CHECKS:
        start = time.perf_counter()
        check(world)
        if world.rank == 0:
            print(f"{check.__name__:<66} ok  {time.perf_counter() - start:6.2f} s", flush=True)
    if world.rank == 0:
        print(f"PASS on {world.size} MPI ranks", flush=True)
