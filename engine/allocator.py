"""Keep freed memory for the next step instead of handing it back to the OS (glibc only).

A training step allocates the same large arrays every time (activations, im2col columns,
gradients: LeNet-5 at batch 64 makes a dozen of 1-5 MB) and frees them at the end. glibc's
malloc returns such blocks to the kernel (``munmap``, or trimming the heap top), so the next
step gets fresh pages and pays a page fault on every 4 KiB it touches. Measured on the
LeNet-5 step (``python -m benchmarks.engine --only lenet5``, 2 cores, load about 2): median
12.2 ms with glibc's defaults, 6.7 ms with the settings below (an earlier quiet run: 12.6, 4.8).
(PyTorch avoids the same cost with its caching allocators.)

``keep_freed_memory()`` raises two glibc thresholds with ``mallopt``:

    M_MMAP_THRESHOLD  32 MiB   blocks below this come from the heap, not from mmap
    M_TRIM_THRESHOLD  128 MiB  the heap keeps up to this much free memory at its top

so each malloc arena may keep up to about 128 MiB of freed memory at the top of its heap
(glibc gives threads arenas of their own, so the in-process world's thread ranks may keep
several times that). Opt-in: ``engine.process.configure_process()`` calls it (``import
engine`` does not), unless the user already tuned malloc (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
in the environment) or opted out with ``MPIGRAD_KEEP_FREED_MEMORY=0``. Elsewhere than
glibc (macOS, musl) it does nothing.
"""
import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's <malloc.h>
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 128 * 2**20
_MALLOC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
_OFF = ("0", "false", "no", "off")


def keep_freed_memory(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD):
    """Set glibc's mmap and trim thresholds; True if glibc accepted both."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))


def keep_freed_memory_unless_told_otherwise(environ=os.environ):
    """What ``configure_process`` does: keep_freed_memory() unless the environment says otherwise."""
    switch = environ.get("MPIGRAD_KEEP_FREED_MEMORY", "").strip().lower()
    if switch in _OFF or (not switch and any(name in environ for name in _MALLOC_VARIABLES)):
        return False  # opted out, or the user tuned malloc and did not ask us to override
    return keep_freed_memory()
