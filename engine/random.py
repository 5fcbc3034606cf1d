"""The engine's default random generator (parameter initialisation, dropout).

Like ``torch.manual_seed``, :func:`manual_seed` makes a run reproducible. The
generator is per thread, so in-process "ranks" running on threads (the test
world of ``collectives``) each own one, as MPI processes do.
"""
import threading

import numpy

_state = threading.local()


def manual_seed(seed):
    """Seed this thread's default generator; returns it."""
    _state.generator = numpy.random.default_rng(seed)
    return _state.generator


def default_generator():
    """This thread's generator (seeded with 0 until ``manual_seed`` is called)."""
    generator = getattr(_state, "generator", None)
    return generator if generator is not None else manual_seed(0)
