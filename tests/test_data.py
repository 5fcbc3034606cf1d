"""Tests of engine.data: bundled MNIST subset, IDX / npz readers, synthetic sets, DataLoader, shard.

Nothing here needs the network or the dataset-fashion-mnist package: IDX files are written by
the tests themselves (``write_idx`` below is an independent writer of the format).
"""
import gzip
import hashlib
import struct

import numpy as np
import pytest

from engine import data
from engine.data import mnist
from engine.tensor import Tensor

BUNDLED_SHA256 = "80ae696550380deea97f35e4fe736478809b7ba85be61e6d61c78a62544f5791"
IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, gz=False):
    """Write ``array`` as an IDX file: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_mnist_dir(directory, n_train=6, n_test=3, gz=False, seed=0):
    """Four tiny MNIST-layout IDX files; returns the uint8 arrays written."""
    rng = np.random.default_rng(seed)
    arrays = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8))
    suffix = ".gz" if gz else ""
    for stem, array in zip(mnist.IDX_FILES, arrays):
        write_idx(directory / (stem + suffix), array, gz=gz)
    return arrays


def as_numpy(t):
    return np.asarray(t.data)


# ---------------------------------------------------------------- bundled MNIST subset

def test_bundled_mnist_shapes_dtypes_range_and_balance():
    X_train, y_train, X_test, y_test = data.load_mnist()
    assert X_train.shape == (4000, 784) and X_test.shape == (1000, 784)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert X_train.min() == 0.0 and X_train.max() == 1.0
    np.testing.assert_array_equal(np.round(X_train * 255), X_train * np.float32(255))  # k/255 pixels
    np.testing.assert_array_equal(np.bincount(y_train), [400] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [100] * 10)
    assert len(np.unique(y_train[:100])) == 10  # shuffled, not sorted by class
    train_rows = {row.tobytes() for row in X_train}
    assert not any(row.tobytes() in train_rows for row in X_test)  # train and test disjoint


def test_bundled_mnist_is_deterministic_and_the_documented_file():
    first, second = data.load_mnist(), data.load_mnist()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert hashlib.sha256(mnist.BUNDLED_MNIST.read_bytes()).hexdigest() == BUNDLED_SHA256
    assert mnist.BUNDLED_MNIST.stat().st_size < 1_000_000


# ---------------------------------------------------------------- IDX reader

@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_idx_round_trip(tmp_path, gz, dtype):
    array = (np.arange(2 * 3 * 4) * 37 - 100).astype(dtype).reshape(2, 3, 4)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    back = mnist.read_idx(write_idx(tmp_path / "a.idx", array, gz=gz))
    assert back.dtype == dtype and back.shape == (2, 3, 4) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_is_big_endian(tmp_path):
    path = tmp_path / "b.idx"
    path.write_bytes(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 1, 2, 0xFF, 0xFF, 0xFF, 0xFE]))
    np.testing.assert_array_equal(mnist.read_idx(path), [258, -2])


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_idx_directory(tmp_path, gz):
    images, labels, test_images, test_labels = write_mnist_dir(tmp_path, gz=gz)
    X_train, y_train, X_test, y_test = data.load_mnist(tmp_path)
    assert X_train.shape == (6, 784) and X_train.dtype == np.float32 and y_train.dtype == np.int64
    np.testing.assert_allclose(X_train, images.reshape(6, 784) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(X_test, test_images.reshape(3, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_train, labels)
    np.testing.assert_array_equal(y_test, test_labels)


def test_missing_idx_file_names_files_and_directory(tmp_path):
    write_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(tmp_path)
    assert "t10k-labels-idx1-ubyte[.gz]" in str(info.value) and str(tmp_path) in str(info.value)
    assert "train-images" not in str(info.value)  # only the missing file is listed


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist.read_idx(path)
    path.write_bytes(b"\x00\x00\x07\x01\x00\x00\x00\x01\x05")  # unknown type code
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist.read_idx(path)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_data(tmp_path, gz):
    raw = write_idx(tmp_path / "full", np.zeros((4, 5), np.uint8)).read_bytes()[:-3]
    path = tmp_path / "cut"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(ValueError, match="truncated"):
        mnist.read_idx(path)


def test_idx_truncated_header_gzip_stream_and_trailing_bytes(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"\x00\x00\x08\x03\x00\x00")  # says 3 dims, has half of one
    with pytest.raises(ValueError, match="truncated IDX header"):
        mnist.read_idx(path)
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02")[:-10])
    with pytest.raises(ValueError, match="gzip"):
        mnist.read_idx(path)
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x01\x02\x03")
    with pytest.raises(ValueError, match="trailing"):
        mnist.read_idx(path)


def test_image_label_count_mismatch(tmp_path):
    write_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="6 images but 5 labels"):
        data.load_mnist(tmp_path)


# ---------------------------------------------------------------- npz reader, paths, names

def test_load_mnist_from_keras_npz(tmp_path):
    rng = np.random.default_rng(1)
    arrays = dict(x_train=rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), y_train=np.arange(5, dtype=np.uint8),
                  x_test=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8), y_test=np.array([7, 9], np.uint8))
    np.savez(tmp_path / "mnist.npz", **arrays)
    X_train, y_train, X_test, y_test = data.load_mnist(tmp_path / "mnist.npz")
    np.testing.assert_allclose(X_train, arrays["x_train"].reshape(5, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_test, [7, 9])
    assert X_test.shape == (2, 784) and y_train.dtype == np.int64
    del arrays["y_test"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match="y_test"):
        data.load_mnist(tmp_path / "broken.npz")


def test_nonexistent_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_mnist(tmp_path / "nowhere")


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="sudo apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path)  # an empty directory
    monkeypatch.setattr(mnist, "FASHION_MNIST_DIR", str(tmp_path / "not-installed"))
    with pytest.raises(FileNotFoundError, match="path="):
        data.load_fashion_mnist()


def test_fashion_mnist_reads_idx_directory(tmp_path):
    _, labels, _, _ = write_mnist_dir(tmp_path, gz=True)
    np.testing.assert_array_equal(data.load_fashion_mnist(tmp_path)[1], labels)


def test_load_dataset_by_name(tmp_path):
    np.testing.assert_array_equal(data.load_dataset("mnist")[3], data.load_mnist()[3])
    _, labels, _, _ = write_mnist_dir(tmp_path)
    np.testing.assert_array_equal(data.load_dataset("fashion-mnist", tmp_path)[1], labels)
    with pytest.raises(ValueError, match="'mnist'.*'fashion-mnist'"):
        data.load_dataset("cifar10")


# ---------------------------------------------------------------- synthetic sets (MATH E1, E3, E4)

def test_linear_regression_e1():
    X, y = data.linear_regression_e1(n=200, seed=3)
    assert X.shape == y.shape == (200, 1) and X.dtype == y.dtype == np.float32
    theta = float((X * y).sum() / (X * X).sum())  # argmin of 1/2 sum (y - theta x)^2
    assert abs(theta - 3.0) < 0.05
    np.testing.assert_array_equal(X, data.linear_regression_e1(n=200, seed=3)[0])
    assert not np.array_equal(X, data.linear_regression_e1(n=200, seed=4)[0])
    assert data.linear_regression_e1(n=4, dtype=np.float64)[0].dtype == np.float64


def test_binary_classification_e3():
    X_train, y_train, X_test, y_test = data.binary_classification_e3(seed=0)
    assert X_train.shape == (80, 2) and y_train.shape == (80, 1)
    assert X_test.shape == (20, 2) and y_test.shape == (20, 1)
    assert X_train.dtype == y_train.dtype == np.float32
    labels = np.concatenate([y_train, y_test]).ravel()
    assert set(labels) == {0.0, 1.0} and labels.sum() == 50
    X = np.concatenate([X_train, X_test])
    assert ((X.sum(axis=1) > 0) == (labels == 1)).mean() > 0.85  # the classes sit at -1 and +1
    for a, b in zip(data.binary_classification_e3(seed=0), (X_train, y_train, X_test, y_test)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(data.binary_classification_e3(seed=1)[0], X_train)


def test_linear_regression_e4():
    assert data.THETA0_E4 == (0.1, 0.2, 0.3, 0.4, 0.5)
    X, y = data.linear_regression_e4()
    assert X.shape == (10_000, 5) and y.shape == (10_000, 1) and X.dtype == np.float32
    theta, *_ = np.linalg.lstsq(X.astype(np.float64), y.astype(np.float64), rcond=None)
    np.testing.assert_allclose(theta.ravel(), data.TRUE_THETA_E4, atol=0.01)
    X4, _ = data.linear_regression_e4(num_nodes=4, samples_per_node=3)
    np.testing.assert_array_equal(data.shard(X4, X4, 2, 4)[0], X4[6:9])
    np.testing.assert_array_equal(data.linear_regression_e4()[1], y)


# ---------------------------------------------------------------- DataLoader

def batches(loader):
    return [(as_numpy(xb), as_numpy(yb)) for xb, yb in loader]


def make_xy(n=10):
    return np.arange(n * 2, dtype=np.float32).reshape(n, 2), np.arange(n)


def test_dataloader_yields_tensors_covering_each_epoch():
    X, y = make_xy()
    loader = data.DataLoader(X, y, batch_size=3, seed=0)
    assert len(loader) == 4
    pairs = list(loader)
    assert all(isinstance(xb, Tensor) and isinstance(yb, Tensor) for xb, yb in pairs)
    got = batches(data.DataLoader(X, y, batch_size=3, seed=0))
    assert [len(yb) for _, yb in got] == [3, 3, 3, 1]
    ys = np.concatenate([yb for _, yb in got])
    np.testing.assert_array_equal(np.sort(ys), np.arange(10))  # a permutation of all samples
    for xb, yb in got:
        np.testing.assert_array_equal(xb, X[yb])  # rows of X stay paired with their y
    assert not np.array_equal(ys, np.arange(10))


def test_dataloader_same_seed_same_batches_and_epochs_differ():
    X, y = make_xy(50)
    a, b = data.DataLoader(X, y, 8, seed=7), data.DataLoader(X, y, 8, seed=7)
    a0, a1 = batches(a), batches(a)
    b0, b1 = batches(b), batches(b)
    for (xa, ya), (xb, yb) in zip(a0 + a1, b0 + b1):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a0[0][1], a1[0][1])  # epoch 1 is a new order
    assert a.epoch == 2
    a.set_epoch(1)
    np.testing.assert_array_equal(batches(a)[0][1], a1[0][1])
    other = batches(data.DataLoader(X, y, 8, seed=8))
    assert not np.array_equal(other[0][1], a0[0][1])


def test_dataloader_no_shuffle_and_drop_last():
    X, y = make_xy(10)
    loader = data.DataLoader(X, y, batch_size=4, shuffle=False, drop_last=True)
    assert len(loader) == 2
    got = batches(loader)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in got]), np.arange(8))
    assert len(data.DataLoader(X, y, batch_size=4, drop_last=False)) == 3
    assert len(data.DataLoader(X, y, batch_size=5, drop_last=True)) == 2
    assert len(data.DataLoader(X, y, batch_size=20, drop_last=True)) == 0


@pytest.mark.parametrize("kwargs, name", [
    (dict(batch_size=0), "batch_size"), (dict(batch_size=2.5), "batch_size"),
    (dict(batch_size=True), "batch_size"), (dict(batch_size=2, seed=-1), "seed")])
def test_dataloader_validates_arguments(kwargs, name):
    X, y = make_xy()
    with pytest.raises(ValueError, match=name):
        data.DataLoader(X, y, **kwargs)


def test_dataloader_length_mismatch():
    X, y = make_xy()
    with pytest.raises(ValueError, match="len\\(X\\)=10 and len\\(y\\)=9"):
        data.DataLoader(X, y[:9], batch_size=2)


# ---------------------------------------------------------------- shard

def test_shard_contents():
    X, y = make_xy(10)
    shards = [data.shard(X, y, r, 3) for r in range(3)]
    for r, (Xs, ys) in enumerate(shards):
        np.testing.assert_array_equal(ys, [3 * r, 3 * r + 1, 3 * r + 2])
        np.testing.assert_array_equal(Xs, X[3 * r:3 * r + 3])
    np.testing.assert_array_equal(np.concatenate([ys for _, ys in shards]), np.arange(9))  # row 9 dropped
    Xs, _ = data.shard(X, y, 0, 1)
    np.testing.assert_array_equal(Xs, X)


@pytest.mark.parametrize("rank, world_size, match", [
    (3, 3, "rank"), (-1, 3, "rank"), (0, 0, "world_size"), (0, 11, "empty")])
def test_shard_errors(rank, world_size, match):
    X, y = make_xy(10)
    with pytest.raises(ValueError, match=match):
        data.shard(X, y, rank, world_size)
    with pytest.raises(ValueError, match="same length"):
        data.shard(X, y[:5], 0, 2)
