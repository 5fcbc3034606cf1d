"""What an object carries from one training step to the next, by name: ``state_attributes``.

    class LocalSGD(Strategy):
        state_attributes = Strategy.state_attributes          # ("steps",): H counts on it

    class TopK(Sparsifier):
        state_attributes = ("step", "rank", "rng", "u", "v")  # DGC velocity and accumulator

Everything fixed when the object is built (flags, shapes, communicators) is NOT listed: a
resumed run builds the object again from the same command line, then loads what moved. The
values are copied on the way out (``state_dict``) and put back on the way in:

    array                      a NumPy copy out; back on the device of the array it replaces
    numpy.random.Generator     its bit generator's state, so the next draw is the same draw
    an object with state_dict  its own state_dict, recursively (a compressor, a schedule)
    list / tuple / dict / set  element by element;  numbers, strings, None as they are
"""
import numpy

from engine import backend

_GENERATOR = "__generator__"


def _out(value):
    if hasattr(value, "state_dict"):
        return value.state_dict()
    if isinstance(value, numpy.random.Generator):
        return {_GENERATOR: value.bit_generator.state}
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, numpy.generic):
        return backend.to_numpy(value).copy()
    if isinstance(value, (list, tuple, set)):
        return type(value)(_out(v) for v in value)
    if isinstance(value, dict):
        return {k: _out(v) for k, v in value.items()}
    return value


def _in(current, saved):
    """``saved`` made like ``current`` (the value it replaces), or taken as it is."""
    if hasattr(current, "load_state_dict"):
        current.load_state_dict(saved)
        return current
    if isinstance(saved, dict) and _GENERATOR in saved:
        generator = current if isinstance(current, numpy.random.Generator) else numpy.random.default_rng()
        generator.bit_generator.state = saved[_GENERATOR]
        return generator
    if isinstance(saved, numpy.ndarray) and hasattr(current, "shape"):
        if current.shape != saved.shape or current.dtype != saved.dtype:
            raise ValueError(f"holds {current.dtype} {current.shape}, the checkpoint {saved.dtype} {saved.shape}")
        return backend.to_device(saved, backend.device_of(current)).copy()
    if isinstance(saved, list) and isinstance(current, (list, tuple)) and len(current) == len(saved):
        return type(current)(_in(c, s) for c, s in zip(current, saved))
    return saved


class Stateful:
    """``state_dict()`` / ``load_state_dict(state)`` over the attributes in ``state_attributes``
    (an attribute not set yet, e.g. a buffer made at the first step, is left out)."""

    state_attributes = ()

    def state_dict(self):
        return {name: _out(getattr(self, name)) for name in self.state_attributes if hasattr(self, name)}

    def load_state_dict(self, state):
        unknown = sorted(set(state) - set(self.state_attributes))
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unexpected entries {unknown} "
                             f"(it keeps {list(self.state_attributes)})")
        for name, saved in state.items():
            try:
                setattr(self, name, _in(getattr(self, name, None), saved))
            except ValueError as exc:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {name} {exc}") from exc
