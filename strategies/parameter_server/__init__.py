"""Parameter servers (MATH A2, A3, A10, E7): ranks 0..S-1 own theta and the optimiser, the
other W ranks compute gradients, push them and pull theta back.

    mpirun -n 4 python -m mpi4py -m strategies.train --strategy ps-sync        # 1 server, 3 workers
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy ps-async --servers 2
    mpirun -n 4 python -m mpi4py -m strategies.train --strategy ps-ssp --staleness 1 \\
        --slow-rank 3 --slow-factor 4

Table of contents (one concept per module; docs/parameter_server.md is the lecture):

    shards.py        which server owns which block of theta (F13); the whole model back
    protocol.py      the messages: push = header + gradient block, reply = header + theta block
    schedule.py      which chunk of rows a worker computes next (server 0 hands them out)
    timeline.py      per-rank time per kind (compute, push, wait, pull, apply), Gantt events
    stragglers.py    --slow-rank / --slow-factor: a deterministic slow worker (A10)
    common.py        ParameterServer: roles, the worker's step, flags, checks, eval, bytes
    sync.py          PSSync "ps-sync": wait for all (or W - b: backup workers), average (F10)
    asynchronous.py  PSAsync "ps-async" (Downpour, staleness-aware lr), PSSSP "ps-ssp" (SSP)
    report.py        the record's entries: staleness histogram, drops, time split, timeline
    cost.py          the alpha-beta time of one push + pull against the ring (the benchmark's)
"""
from strategies.parameter_server.asynchronous import PSAsync, PSSSP
from strategies.parameter_server.common import ParameterServer
from strategies.parameter_server.sync import PSSync

__all__ = ["ParameterServer", "PSSync", "PSAsync", "PSSSP"]
