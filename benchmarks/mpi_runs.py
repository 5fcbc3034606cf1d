"""Runs under mpirun that measure on some ranks while the others wait, and what a record says.

    on_first(comm, p, fn)        fn(sub) on ranks 0 .. p-1 (sub: their communicator) while the
                                 rest sleep in idle_barrier; rank 0's result
    idle_barrier(comm)           a barrier whose waiting ranks sleep instead of spinning: MPI's
                                 own Barrier busy-polls and would steal a core from the ranks timed
    cpu_busy(seconds)            how busy OTHER work keeps the machine (/proc/stat), while we sleep
    epoch_throughputs(epochs, B) samples/s of each epoch after the first, from a runner record
"""
import time


def idle_barrier(comm, poll=0.05):
    """A barrier whose waiting ranks sleep between polls instead of spinning on a core."""
    request = comm.mpi_comm.Ibarrier()
    while not request.Test():
        time.sleep(poll)


def on_first(comm, p, fn):
    """fn(sub) on ranks 0 .. p-1 (``sub`` their communicator) while the rest sleep; rank 0's result."""
    sub = comm.split(0 if comm.rank < p else None, comm.rank, name="measured", counted=False)
    result = fn(sub) if sub is not None else None
    idle_barrier(comm)
    return result


def cpu_busy(seconds=1.0):
    """Fraction of the machine's CPU time that was busy over ``seconds`` (/proc/stat), measured
    while every rank of this job sleeps: what OTHER work is doing to our timings."""
    def snapshot():
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)                         # idle + iowait, total
    idle0, total0 = snapshot()
    time.sleep(seconds)
    idle1, total1 = snapshot()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def epoch_throughputs(epochs, batch):
    """Samples/s of each epoch after the first (which warms up), from the record's cumulative times."""
    steps = [0] + [e["steps"] for e in epochs]
    seconds = [0.0] + [e["train_seconds"] for e in epochs]
    rates = [(steps[i + 1] - steps[i]) * batch / (seconds[i + 1] - seconds[i]) for i in range(len(epochs))]
    return rates[1:] or rates
