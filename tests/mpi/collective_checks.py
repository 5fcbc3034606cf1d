"""Checks of every collective, written once against the Comm interface.

Each ``check_*(comm)`` runs on every rank and raises AssertionError on a failure. The same
functions run in the in-process world (tests/test_collectives.py, via spawn) and under real
mpirun (tests/mpi/run_checks.py) - one suite, any world size.

Reference: every rank can make every rank's input (``rank_input`` is seeded by the rank), so
the expected result is the single-process NumPy reduction of all p inputs. Integers must
match exactly (sums wrap the same way in any order). Floats are summed in a different order
by each algorithm, so they must match to

    |y - y_ref| <= 4 p eps(dtype)      (inputs drawn in [-1, 1]; eps = 2^-52 for float64)
"""
import numpy

import collectives
from collectives.chunks import chunk_sizes

DTYPES = ["int8", "uint8", "int32", "int64", "float16", "float32", "float64", "complex128"]
OPS = ["sum", "mean", "max", "min"]
HAND_WRITTEN = ["naive", "tree", "recursive-doubling", "ring"]


def lengths(p):
    """0, 1, fewer than p, exactly p, not divisible by p, larger."""
    return sorted({0, 1, max(p - 1, 0), p, p + 1, 2 * p + 1, 7, 100, 1001})


def rank_input(rank, n, dtype, shape=None):
    """Rank ``rank``'s deterministic input: n elements of ``dtype`` (ints over their whole range)."""
    dtype = numpy.dtype(dtype)
    rng = numpy.random.default_rng([rank, n, dtype.num])
    if dtype.kind in "iu":
        info = numpy.iinfo(dtype)
        x = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    elif dtype.kind == "c":
        x = (rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n)).astype(dtype)
    else:
        x = rng.uniform(-1, 1, n).astype(dtype)
    return x.reshape(shape if shape is not None else (n,))


def reference(p, n, dtype, op, shape=None):
    """The single-process answer: reduce all p inputs with NumPy."""
    stack = numpy.stack([rank_input(r, n, dtype, shape) for r in range(p)])   # (p, *shape)
    if op in ("sum", "mean"):
        total = numpy.add.reduce(stack, axis=0, dtype=stack.dtype)
        return total / p if op == "mean" else total
    return (numpy.maximum if op == "max" else numpy.minimum).reduce(stack, axis=0)


def assert_close(y, expected, p, what):
    assert y.shape == expected.shape, f"{what}: shape {y.shape} != {expected.shape}"
    if expected.dtype.kind in "iu":
        assert y.dtype == expected.dtype and numpy.array_equal(y, expected), f"{what}: not exact"
        return
    eps = numpy.finfo(y.dtype).eps
    err = numpy.max(numpy.abs(y.astype(complex) - expected.astype(complex)), initial=0.0)
    assert err <= 4 * p * eps, f"{what}: max error {err:.3g} > 4 p eps = {4 * p * eps:.3g}"


def algorithms(comm):
    """The hand-written ones, plus the MPI library's when there is one."""
    return HAND_WRITTEN + (["mpi"] if hasattr(comm, "library_allreduce") else [])


def mpi_supports(dtype, op):
    return dtype not in ("float16", "int8", "uint8") and not (dtype.startswith("complex")
                                                               and op in ("max", "min"))


def check_allreduce_matches_reference(comm, algorithm_names=None):
    p = comm.size
    for name in algorithm_names or algorithms(comm):
        for dtype in DTYPES:
            for op in OPS:
                if (dtype.startswith("complex") and op in ("max", "min")) \
                        or (name == "mpi" and not mpi_supports(dtype, op)):
                    continue
                for n in lengths(p):
                    x = rank_input(comm.rank, n, dtype)
                    before = x.copy()
                    y = collectives.allreduce(comm, x, name, op)
                    what = f"{name} {op} n={n} {dtype} p={p} rank={comm.rank}"
                    assert_close(y, reference(p, n, dtype, op), p, what)
                    assert numpy.array_equal(x, before), f"{what}: input modified"


def check_shapes_and_out(comm):
    """Any shape (0-d, 3-d); ``out=`` new buffer; ``out=x`` in place; identical on all ranks."""
    p = comm.size
    for name in algorithms(comm):
        for shape in [(), (3, 4, 5), (2, 0)]:
            n = int(numpy.prod(shape))
            x = rank_input(comm.rank, n, "float64", shape)
            expected = reference(p, n, "float64", "sum", shape)
            out = numpy.empty_like(x)
            assert collectives.allreduce(comm, x, name, out=out) is out
            assert_close(out, expected, p, f"{name} out= shape={shape}")
            assert collectives.allreduce(comm, x, name, out=x) is x
            assert_close(x, expected, p, f"{name} in place shape={shape}")
            everyone = collectives.all_gather(comm, x)                   # (p, *shape)
            assert (everyone == everyone[0]).all(), f"{name}: ranks differ bit for bit"


def check_all_ones(comm):
    """baidu-allreduce's test: ones everywhere sum to the world size, everywhere."""
    for name in algorithms(comm):
        for n in lengths(comm.size):
            y = collectives.allreduce(comm, numpy.ones(n, numpy.float32), name)
            assert (y == comm.size).all(), f"{name} n={n}: all ones did not sum to {comm.size}"


def expected_traffic(name, rank, p, n, itemsize):
    """(messages sent, bytes sent, messages received, bytes received) of one all-reduce."""
    if p == 1:
        return 0, 0, 0, 0
    nbytes = n * itemsize
    if name == "ring":  # rank r sends all chunks but r, then all but r+1; receives all but r-1, r
        size = chunk_sizes(n, p)
        sent = 2 * n - size[rank] - size[(rank + 1) % p]
        received = 2 * n - size[(rank - 1) % p] - size[rank]
        return 2 * (p - 1), sent * itemsize, 2 * (p - 1), received * itemsize
    if name == "naive":
        k = p - 1 if rank == 0 else 1
        return k, k * nbytes, k, k * nbytes
    if name == "tree":  # one message to/from the parent; one from/to each child
        lowbit = rank & -rank if rank else 1 << p.bit_length()
        children = sum(1 for j in range(p.bit_length()) if (1 << j) < lowbit and rank + (1 << j) < p)
        k = children + (1 if rank else 0)
        return k, k * nbytes, k, k * nbytes
    if name == "recursive-doubling":
        q = 1 << (p.bit_length() - 1)
        extra = p - q
        if rank < 2 * extra and rank % 2 == 0:
            k = 1
        else:
            k = (q.bit_length() - 1) + (1 if rank < 2 * extra else 0)
        return k, k * nbytes, k, k * nbytes
    raise ValueError(name)


def check_counters(comm):
    """Bytes and messages counted equal the formulas exactly (check=False: no check traffic)."""
    for name in HAND_WRITTEN:
        for n in lengths(comm.size) + [4096]:
            for dtype in ["float64", "int8"]:
                x = numpy.zeros(n, dtype)
                comm.counters.reset()
                collectives.allreduce(comm, x, name, check=False)
                c = comm.counters
                got = (c.messages_sent, c.bytes_sent, c.messages_received, c.bytes_received)
                want = expected_traffic(name, comm.rank, comm.size, n, x.itemsize)
                assert got == want, f"{name} n={n} {dtype} rank={comm.rank}: {got} != {want}"
    # the ring's headline formula when p divides n: 2 (p - 1)/p n bytes per rank
    n = 120 * comm.size
    comm.counters.reset()
    collectives.ring_allreduce(comm, numpy.zeros(n), check=False)
    assert comm.counters.bytes_sent == 2 * (comm.size - 1) * n * 8 // comm.size
    # the consistency check costs p - 1 small messages each way
    comm.counters.reset()
    collectives.ring_allreduce(comm, numpy.zeros(0), check=True)
    assert comm.counters.messages_sent == 3 * (comm.size - 1)


def check_collectives_api(comm):
    p, rank = comm.size, comm.rank
    for root in range(p):
        x = rank_input(rank, 10, "int64", (2, 5))
        y = collectives.broadcast(comm, x, root)
        assert numpy.array_equal(y, rank_input(root, 10, "int64", (2, 5))), "broadcast"
        r = collectives.reduce(comm, x, root, "max")
        assert (r is None) == (rank != root), "reduce returns None off the root"
        if rank == root:
            assert numpy.array_equal(r, reference(p, 10, "int64", "max", (2, 5))), "reduce"
        g = collectives.gather(comm, x, root)
        if rank == root:
            assert numpy.array_equal(g, numpy.stack([rank_input(k, 10, "int64", (2, 5))
                                                     for k in range(p)])), "gather"
        blocks = numpy.arange(p * 3, dtype=numpy.float32).reshape(p, 3) * (root + 1)
        s = collectives.scatter(comm, blocks if rank == root else numpy.zeros_like(blocks), root)
        assert numpy.array_equal(s, blocks[rank]), "scatter"
    for n in lengths(p):
        x = rank_input(rank, n, "int32")
        chunk = collectives.reduce_scatter(comm, x)
        lo = sum(chunk_sizes(n, p)[:rank])
        assert numpy.array_equal(chunk, reference(p, n, "int32", "sum")[lo:lo + chunk.size])
        assert chunk.size == chunk_sizes(n, p)[rank], "reduce_scatter chunk size"
        everyone = collectives.all_gather(comm, x)
        assert numpy.array_equal(everyone, numpy.stack([rank_input(k, n, "int32")
                                                        for k in range(p)])), "all_gather"


def check_bad_input_fails_everywhere(comm):
    """Mismatched calls raise ValueError on EVERY rank (each rank then reports to all)."""
    if comm.size == 1:
        return
    rank = comm.rank
    cases = {
        "length": lambda name: collectives.allreduce(comm, numpy.ones(5 + rank), name),
        "dtype": lambda name: collectives.allreduce(
            comm, numpy.ones(5, "float32" if rank == 0 else "float64"), name),
        "shape": lambda name: collectives.allreduce(comm, numpy.ones((2, 3) if rank else (3, 2)),
                                                    name),
        "algorithm": lambda name: collectives.allreduce(comm, numpy.ones(5),
                                                        "ring" if rank else "tree"),
        "op": lambda name: collectives.allreduce(comm, numpy.ones(5), name,
                                                 "sum" if rank else "max"),
    }
    raised = []
    for case, call in cases.items():
        for name in algorithms(comm):
            try:
                call(name)
            except ValueError as error:
                assert "ranks disagree" in str(error), str(error)
                raised.append(1)
            else:
                raised.append(0)
    everyone = collectives.all_gather(comm, numpy.array(raised, numpy.int8))
    assert everyone.all(), f"some rank did not raise: {everyone.tolist()}"
    # and the world still works afterwards (no stray messages left behind)
    assert (collectives.allreduce(comm, numpy.ones(3)) == comm.size).all()


def check_bucketed(comm):
    p, rank = comm.size, comm.rank
    shapes = [(3, 4), (4,), (4, 2), (2,), (100,), (), (0,), (7, 7)]
    arrays = [rank_input(rank, int(numpy.prod(s)), "float64", s) for s in shapes]
    arrays.append(rank_input(rank, 6, "int32"))                 # another dtype: its own bucket
    expected = [reference(p, a.size, a.dtype, "sum", a.shape) for a in arrays]
    for bucket_bytes in [1, 128, 1 << 20]:
        copies = [a.copy() for a in arrays]
        comm.counters.reset()
        results = collectives.bucketed_allreduce(comm, copies, bucket_bytes, check=False)
        buckets = collectives.plan_buckets(copies, bucket_bytes)
        assert comm.counters.messages_sent == len(buckets) * 2 * (p - 1), "one ring per bucket"
        for got, want, before, after in zip(results, expected, arrays, copies):
            assert_close(got, want, p, f"bucketed {bucket_bytes}")
            assert numpy.array_equal(before, after), "bucketed modified its input"
        results = collectives.bucketed_allreduce(comm, copies, bucket_bytes, "tree", "mean",
                                                 inplace=True)
        assert all(r is c for r, c in zip(results, copies))
        for got, want in zip(copies, expected):
            assert_close(got, want / p if got.dtype.kind == "f" else got, p, "bucketed in place")


def check_trace(comm):
    """The ring's trace says rank r sent chunk (r - step - 1) % p at reduce-scatter ``step``."""
    p, rank = comm.size, comm.rank
    comm.trace = collectives.Trace()
    collectives.ring_allreduce(comm, numpy.ones(2 * p + 1), check=False)
    steps, comm.trace = comm.trace.steps(), None
    assert len(steps) == 2 * (p - 1)
    for step in range(p - 1):
        assert steps[("reduce-scatter", step)] == ((rank - step - 1) % p, (rank - step - 2) % p)
        assert steps[("all-gather", step)] == ((rank - step) % p, (rank - step - 1) % p)


def check_split(comm):
    """Even and odd ranks in two sub-worlds: each all-reduces over its own members only."""
    sub = comm.split(comm.rank % 2, key=-comm.rank)       # reversed order inside each group
    members = [r for r in range(comm.size) if r % 2 == comm.rank % 2]
    assert sub.size == len(members) and sub.rank == members[::-1].index(comm.rank)
    y = collectives.allreduce(sub, numpy.array([comm.rank], numpy.int64))
    assert y[0] == sum(members)
    assert comm.split(None) is None


def check_short_message_is_an_error(comm):
    """A message shorter than the receive buffer is a ValueError naming both sizes, in both
    worlds (MPI itself accepts it and leaves the rest of the buffer as it was)."""
    if comm.size < 2:
        return
    if comm.rank == 0:
        comm.send(numpy.arange(3.0), 1, tag=7)
    elif comm.rank == 1:
        try:
            comm.recv(numpy.full(5, -1.0), 0, tag=7)
        except ValueError as error:
            assert "recv(source=0, tag=7, 40 B): the message has 24 B" in str(error), error
        else:
            raise AssertionError("a 24 B message into a 40 B buffer was accepted")
    comm.barrier()


ALL_CHECKS = [check_allreduce_matches_reference, check_shapes_and_out, check_all_ones,
              check_counters, check_collectives_api, check_bad_input_fails_everywhere,
              check_bucketed, check_trace, check_split, check_short_message_is_an_error]
