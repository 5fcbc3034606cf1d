"""Tutorial 3: the ring all-reduce, step by step, on 4 MPI ranks.

    mpirun -n 4 python -m mpi4py tutorials/03_ring_allreduce.py            (add --quick: faster)
    python tutorials/03_ring_allreduce.py      # the same 4 ranks, as threads (tutorials/ranks.py)

Data parallelism ends every step with g = (1/K) sum_k g_k on every worker (MATH F10): an
all-reduce. This script
  1. runs collectives.ring_allreduce on a 10-element array with the trace on, and replays the
     trace to print who sends which chunk - and which ranks' values it already holds - at each
     of the 2 (p - 1) steps (read collectives/ring.py alongside: same names, same table);
  2. checks every hand-written algorithm against the MPI library's own MPI.Allreduce (the
     threads world has no MPI library: there, against the sum of the ranks' inputs in NumPy);
  3. times them all, and counts the bytes each rank sent against 2 (p - 1)/p n;
  4. ends with PASS or FAIL.
Any number of ranks works; the printed tables are for the -n you choose.
"""
import argparse
import sys
import time

import numpy

import collectives
from collectives.chunks import chunk_sizes

import ranks  # tutorials/ranks.py: 4 ranks from mpirun, or as threads here


# -- 1. the ring, step by step -------------------------------------------------------------------
def ring_step_by_step(comm, say):
    """Section 1: the ring on 10 elements, traced; rank 0 replays who sends what. Its checks."""
    rank, p, checks = comm.rank, comm.size, []
    n = 10
    x = numpy.arange(n, dtype=numpy.float64) + 100 * rank          # rank r holds 100 r + [0 .. 9]
    say(f"{p} ranks, n = {n} elements in {p} chunks of sizes {chunk_sizes(n, p)}\n")
    comm.trace = collectives.Trace()
    y = collectives.ring_allreduce(comm, x)
    steps, comm.trace = comm.trace.steps(), None
    # Every rank's (chunk sent, chunk received) per step, as a small int array, gathered to rank 0.
    phases = ["reduce-scatter", "all-gather"]
    mine = numpy.array([steps[(phase, step)] for phase in phases for step in range(p - 1)],
                       numpy.int64).reshape(2 * (p - 1), 2)                # (2(p-1), 2)
    table = collectives.gather(comm, mine)                                 # (p, 2(p-1), 2) on rank 0

    if rank == 0:
        # Replay symbolically: holds[r][c] = the set of ranks whose values rank r's chunk c contains.
        holds = [[{r} for _ in range(p)] for r in range(p)]
        for row in range(2 * (p - 1)):
            phase, step = phases[row // (p - 1)], row % (p - 1)
            print(f"{phase} step {step}:")
            arrived = []
            for sender in range(p):
                send_chunk = int(table[sender, row, 0])
                receiver = (sender + 1) % p
                contents = holds[sender][send_chunk]
                label = "+".join(f"x{r}" for r in sorted(contents))
                print(f"    rank {sender} -> rank {receiver}:  chunk {send_chunk} = {label}")
                arrived.append((receiver, send_chunk, contents))
            for receiver, chunk, contents in arrived:   # all messages of a step travel at once
                if phase == "reduce-scatter":
                    holds[receiver][chunk] = holds[receiver][chunk] | contents   # add into my copy
                else:
                    holds[receiver][chunk] = set(contents)                       # overwrite
        complete = all(holds[r][c] == set(range(p)) for r in range(p) for c in range(p))
        print(f"\nevery rank holds every chunk summed over all {p} ranks: {complete}")
        checks.append(complete)
    expected = sum(numpy.arange(n) + 100 * r for r in range(p))
    checks.append(numpy.array_equal(y, expected))
    say(f"result on rank 0: {y}\n")
    return checks


# -- 2. against the MPI library ------------------------------------------------------------------
def algorithms_here(comm):
    """Every name in collectives.ALGORITHMS, less "mpi" in the threads world (no MPI library)."""
    return [name for name in collectives.ALGORITHMS if isinstance(comm, collectives.MPIComm) or name != "mpi"]


def rank_input(rank, n, dtype):
    """Rank ``rank``'s test array: n numbers in (-1000, 1000), the same whichever rank asks."""
    return (numpy.random.default_rng(rank).uniform(-1, 1, n) * 1000).astype(dtype)


def reference_sum(comm, x, input_of):
    """What every algorithm must return: MPI.Allreduce under mpirun; in the threads world (no MPI
    library) x_0 + x_1 + ... + x_(p-1) in NumPy, each rank's input rebuilt by ``input_of``."""
    if not isinstance(comm, collectives.MPIComm):
        return sum((input_of(r) for r in range(1, comm.size)), input_of(0))
    from mpi4py import MPI  # only now: section 1 never touches mpi4py itself
    reference = numpy.empty_like(x)
    MPI.COMM_WORLD.Allreduce(x, reference, op=MPI.SUM)
    return reference


def against_the_reference(comm, say):
    """Section 2: every algorithm, three dtypes, four sizes (0, 1, p - 1, 1001). Its checks."""
    rank, p, checks = comm.rank, comm.size, []
    reference_name = "MPI.Allreduce" if isinstance(comm, collectives.MPIComm) else "sum in NumPy"
    say(f"{'algorithm':<20}{'dtype':<10}{'n':>8}   max |y - {reference_name}|")
    for dtype in ["float64", "float32", "int64"]:
        for n_check in [0, 1, p - 1, 1001]:
            xc = rank_input(rank, n_check, dtype)
            reference = reference_sum(comm, xc, lambda r: rank_input(r, n_check, dtype))
            for name in algorithms_here(comm):
                yc = collectives.allreduce(comm, xc, name)
                error = float(numpy.max(numpy.abs(yc - reference), initial=0.0))
                tolerance = 0 if dtype == "int64" else 4 * p * numpy.finfo(dtype).eps * 1000
                checks.append(error <= tolerance)
                if n_check == 1001:
                    say(f"{name:<20}{dtype:<10}{n_check:>8}   {error:.2g}  (allowed {tolerance:.2g})")
    return checks


# -- 3. timing and traffic -----------------------------------------------------------------------
def timing_and_traffic(comm, say, quick):
    """Section 3: median times per algorithm and size; the ring's bytes against 2 (p-1)/p n."""
    p, checks, algorithms = comm.size, [], algorithms_here(comm)
    sizes = [1 << 10, 64 << 10] if quick else [1 << 10, 1 << 20, 16 << 20]
    say(f"\nmedian time of {5 if quick else 10} runs ({p} ranks; --quick: small sizes only)")
    if not isinstance(comm, collectives.MPIComm):
        say("(threads of one process take turns holding Python's lock: these are not MPI's times)")
    say(f"{'bytes':>10}  " + "".join(f"{name:>20}" for name in algorithms))
    for nbytes in sizes:
        xt = numpy.ones(nbytes // 8)
        row = []
        for name in algorithms:
            times = []
            for _ in range(5 if quick else 10):
                comm.barrier()
                start = time.perf_counter()
                collectives.allreduce(comm, xt, name, check=False)
                times.append(time.perf_counter() - start)
            row.append(f"{numpy.median(times) * 1e3:>17.3f} ms")
        say(f"{nbytes:>10}  " + "".join(row))

    comm.counters.reset()
    xt = numpy.ones(1200 * p)                                        # p divides n
    collectives.ring_allreduce(comm, xt, check=False)
    formula = 2 * (p - 1) * xt.nbytes // p
    say(f"\nring: rank 0 sent {comm.counters.bytes_sent} bytes; 2 (p-1)/p n = {formula}")
    checks.append(comm.counters.bytes_sent == formula)
    return checks


# -- 4. verdict: PASS only if every check passed on every rank ------------------------------------
def main(comm, args):
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    checks = (ring_step_by_step(comm, say) + against_the_reference(comm, say)
              + timing_and_traffic(comm, say, args.quick))
    passed = collectives.allreduce(comm, numpy.array([all(checks)], numpy.int64), op="min")[0] == 1
    say("PASS" if passed else "FAIL")
    return passed


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small timing sizes (used by the tests)")
    sys.exit(ranks.run(main, parser.parse_args(), world_size=4))
