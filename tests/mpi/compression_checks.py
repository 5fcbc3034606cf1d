"""Every gradient compressor's exchange under real MPI processes, in one launch.

    mpirun -n 3 python -m mpi4py tests/mpi/compression_checks.py

For each compressor and awkward sizes (n = 1, 7, 1000, 10007; PowerSGD on a (13, 7) matrix
plus a bias of 5), two exchanges: every rank gets the same array (gathered and compared),
and the bytes each rank sent, summed over ranks, equal the formula's mean times p. Rank 0
prints one line per compressor and "PASS on K MPI ranks".
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository root

import numpy  # noqa: E402

import collectives  # noqa: E402
from engine.process import configure_process  # noqa: E402
from strategies.compression import COMPRESSORS, build  # noqa: E402


def main():
    configure_process()
    comm = collectives.world()
    p, say = comm.size, (print if comm.rank == 0 else (lambda *a, **k: None))
    for name in sorted(COMPRESSORS):
        cases = [(n, [(n,)]) for n in (1, 7, 1000, 10007)] if name != "powersgd" else [(96, [(13, 7), (5,)])]
        for n, shapes in cases:
            c = build(name, ratio=0.1, levels=8, rank=2, seed=3, shapes=shapes)
            rng = numpy.random.default_rng(comm.rank)
            for _ in range(2):
                g = rng.standard_normal(n)
                expected = c.bytes_sent(p, n, g.itemsize)
                before = comm.counters.bytes_sent
                out = c.exchange(comm, g)
                sent = numpy.array([comm.counters.bytes_sent - before], numpy.float64)
                total = collectives.allreduce(comm, sent, "tree", "sum", check=False)[0]
                everyone = comm.mpi_comm.allgather(out)
                assert all(numpy.array_equal(everyone[0], o) for o in everyone), (name, n)
                assert abs(total - expected * p) <= 1e-9 * max(1.0, expected * p), (name, n, total, expected * p)
        say(f"ok  {name}: the same result on every rank, bytes == formula", flush=True)
    say(f"PASS on {p} MPI ranks", flush=True)


if __name__ == "__main__":
    main()
