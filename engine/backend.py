"""The one switch for the array library.

Every op in the engine gets its array module from here (``xp = array_module(x)``),
never by importing NumPy or CuPy itself, so that the same op code runs on a
NumPy array (``device="cpu"``) and on a CuPy array (``device="cuda"``).
CuPy is imported lazily: a machine without it never pays for (or fails on) it.
"""
import numpy

DEVICES = ("cpu", "cuda")


def cupy_available():
    """True when CuPy imports and sees at least one GPU."""
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or a CUDA runtime error on a machine without a driver
        return False


def _cupy():
    try:
        import cupy
    except ImportError as exc:
        raise RuntimeError(
            "device='cuda' needs CuPy: pip install -e '.[gpu]' on a machine with an NVIDIA GPU"
        ) from exc
    return cupy


def check_device(device):
    """Return ``device`` if it names a known device, else raise ValueError."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    return device


def module_for(device):
    """The array module (numpy or cupy) that holds arrays on ``device``."""
    return _cupy() if check_device(device) == "cuda" else numpy


def device_of(array):
    """'cuda' for a CuPy array, 'cpu' for anything else (NumPy arrays, scalars)."""
    return "cuda" if type(array).__module__.startswith("cupy") else "cpu"


def array_module(array):
    """The array module that owns ``array``: numpy for NumPy arrays, cupy for CuPy arrays."""
    return module_for(device_of(array))


def to_device(array, device):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    if device_of(array) == check_device(device):
        return array
    if device == "cuda":
        return _cupy().asarray(array)
    return array.get()  # CuPy -> NumPy


def to_numpy(array):
    """A NumPy array with the contents of ``array`` (a host copy for CuPy)."""
    return to_device(array, "cpu")
