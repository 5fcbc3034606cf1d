"""The watchdog (MATH A9, detect a failed node): a rank stuck in one blocking MPI call for
``timeout`` seconds aborts the job.

    collectives.set_timeout(60)       # any time, before or after collectives.world(); per process
    collectives.set_timeout(None)     # (or 0) off again: the default

Without it, a rank waiting in a receive on a peer that is stopped (``kill -STOP``), hung or
deadlocked waits forever, and so does the job. With it, every blocking primitive of every
MPIComm of this process (the world and every communicator split from it: send, recv,
sendrecv, wait, waitany, blocking probe, barrier, split, library_allreduce) records what it is
and when it started while it runs; a daemon thread looks every min(1, timeout / 4) s, and when
one has run longer than ``timeout`` it prints ONE line to stderr, e.g.

    mpigrad watchdog: rank 0 of 4: no progress for 5.2 s (timeout 5 s) in wait(irecv(source=2,
    ...)) on communicator 'world' during allreduce - a rank may be stopped or hung; aborting the job

and ends this process with exit code 3 (``os._exit``: no MPI_Finalize), upon which mpirun
(MPICH's hydra) kills every other rank, the stopped one included, and exits non-zero.
"No progress" means one single blocking call: a collective whose steps keep completing, however
slowly, never fires. Peers are ranks of the communicator named. mpi4py releases the interpreter
lock inside blocking calls, so the thread runs while the rank waits.

Cost per blocking call: one global test when off; a clock read and a dict write and delete
when on (no MPI call). The in-process world (spawn) has a deadlock timeout of its own
(mailbox.py); ``set_timeout`` also sets its default (``spawn(timeout=None)``).
"""
import functools
import os
import sys
import threading
import time

EXIT_CODE = 3
SPAWN_DEFAULT = 30.0     # the in-process world's deadlock timeout when none is set

_timeout = None          # seconds, or None: off
_active = {}             # thread ident -> (object, describe, args, start) of its blocking call
_thread = None


def set_timeout(seconds):
    """Abort the job when one blocking MPI call of this process lasts ``seconds`` (None, 0: off)."""
    global _timeout, _thread
    if seconds is not None and not seconds >= 0:
        raise ValueError(f"set_timeout: seconds must be >= 0 or None, got {seconds!r}")
    _timeout = float(seconds) if seconds else None
    if _timeout is not None and _thread is None:
        _thread = threading.Thread(target=_watch, name="mpigrad watchdog", daemon=True)
        _thread.start()


def get_timeout():
    """The timeout set by ``set_timeout`` (seconds), or None."""
    return _timeout


def spawn_timeout(timeout):
    """The in-process world's per-wait timeout: ``timeout``, else set_timeout's, else 30 s."""
    return timeout if timeout is not None else (_timeout or SPAWN_DEFAULT)


def watched(describe):
    """Decorate a blocking primitive ``method(self, *args)`` (positional arguments only: the
    cheapest wrapper); while it runs, the watchdog knows it. ``describe(self, *args)`` ->
    (comm, "recv(source=2, ...)"), called only on firing."""
    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, *args):
            if _timeout is None:
                return method(self, *args)
            key = threading.get_ident()
            _active[key] = (self, describe, args, time.monotonic())
            try:
                return method(self, *args)
            finally:
                del _active[key]
        return wrapper
    return decorate


def _watch():
    while True:
        timeout = _timeout
        if timeout is not None:
            now = time.monotonic()
            for obj, describe, args, start in _active.copy().values():  # copy(): atomic
                if now - start > timeout:
                    _fire(timeout, now - start, *describe(obj, *args))
        time.sleep(min(1.0, timeout / 4) if timeout else 1.0)


def message(timeout, elapsed, comm, call):
    """The one line the watchdog prints (see the module docstring)."""
    where = "" if comm.name == "world" else f" (its rank {comm.rank} of {comm.size})"
    owner = getattr(comm, "_collective_owner", None)
    during = f" during {owner[1]}" if owner else ""
    return (f"mpigrad watchdog: rank {comm.world_rank} of {comm.world_size}: no progress for "
            f"{elapsed:.1f} s (timeout {timeout:g} s) in {call} on communicator "
            f"'{comm.name}'{where}{during} - a rank may be stopped or hung; aborting the job")


def _fire(timeout, elapsed, comm, call):
    try:
        sys.stdout.flush()
        sys.stderr.write(message(timeout, elapsed, comm, call) + "\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_CODE)
