"""What every public collective checks on entry, in one place: ``@collective``.

    @collective
    def broadcast(comm, x, root=0, ...): ...

Before any message, on the calling rank alone (so a bad call raises on every rank that makes
it and leaves no rank waiting):

  * ``x`` is a NumPy or CuPy array: a list, tuple, scalar or engine Tensor is a TypeError
    naming the function and the type (pass ``numpy.asarray(x)``, or ``tensor.data``);
  * ``x`` is in native byte order, converted if not (``numpy.arange(4, dtype=">f8")``):
    the ranks send raw bytes, so one rank's big-endian array would be read as garbage by
    the others; results come back in native byte order;
  * ``root`` (broadcast, reduce, gather, scatter) is a rank: 0 <= root < comm.size;
  * no other thread is inside a collective on this ``comm``: two threads running
    collectives on one communicator would take each other's messages (MPI forbids it
    too), so the second one raises RuntimeError naming the communicator and both threads.
    Use one communicator per thread (``comm.split(0, name=...)`` makes another).
    The same thread may nest collectives (allreduce calls ring_allreduce).
"""
import functools
import inspect
import threading

import numpy

from engine.backend import device_of


def as_array(x, call):
    """``x`` if it is a NumPy / CuPy array in native byte order, a native copy if it is
    byte-swapped; TypeError naming ``call`` for anything else."""
    if not isinstance(x, numpy.ndarray) and device_of(x) != "cuda":
        raise TypeError(f"{call}: expected a NumPy or CuPy array, got {type(x).__name__}; "
                        "pass numpy.asarray(x) (for an engine Tensor: tensor.data)")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def check_root(comm, root, call):
    """ValueError unless ``root`` is a rank of ``comm`` (the same test on every rank)."""
    if isinstance(root, bool) or not isinstance(root, (int, numpy.integer)) \
            or not 0 <= root < comm.size:
        raise ValueError(f"{call}: root={root!r} is not a rank of this communicator of size "
                         f"{comm.size} (0 .. {comm.size - 1})")


def _concurrent(comm, call):
    thread, inside = comm._collective_owner or ("?", "a collective")  # it may just have left
    return RuntimeError(
        f"{call}: thread {threading.current_thread().name!r} entered a collective on "
        f"communicator '{comm.name}' (rank {comm.rank} of {comm.size}) while thread "
        f"{thread!r} is inside {inside} on it; use one communicator per thread "
        "(comm.split(0, name=...) makes another)")


def collective(fn):
    """Wrap ``fn(comm, x, [root,] ...)`` with the entry checks of the module docstring."""
    call = fn.__name__
    rooted = "root" in inspect.signature(fn).parameters  # always the third parameter

    @functools.wraps(fn)
    def wrapper(comm, x, *args, **kwargs):
        x = as_array(x, call)
        if rooted:
            check_root(comm, args[0] if args else kwargs.get("root", 0), call)
        lock = comm._collective_lock        # an RLock: the owning thread may nest
        if not lock.acquire(blocking=False):
            raise _concurrent(comm, call)
        outermost = comm._collective_owner is None
        if outermost:
            comm._collective_owner = (threading.current_thread().name, call)
        try:
            return fn(comm, x, *args, **kwargs)
        finally:
            if outermost:
                comm._collective_owner = None
            lock.release()
    return wrapper
