"""CSR and its kernels, k-means weight sharing, Huffman coding, and the Deep Compression byte
accounting (MATH A7; engine/compress/sparse.py, sharing.py, huffman.py, deep_compression.py)."""
import math
from collections import Counter

import numpy
import pytest

from engine import functional as F
from engine import models, nn
from engine.compress import huffman
from engine.compress.deep_compression import deep_compression_bytes, huffman_streams, position_gaps
from engine.compress.sharing import kmeans_1d, share_weights
from engine.compress.sparse import (CSR, SparseLinear, csr_matmul, sparse_linear,
                                    time_sparse_vs_dense)
from engine.random import manual_seed
from engine.tensor import Tensor


def _sparse(rng, shape, sparsity, dtype):
    W = rng.standard_normal(shape).astype(dtype)
    W[rng.random(shape) < sparsity] = 0
    return W


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (300, 784), (5, 3)])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99, 1.0])
def test_csr_round_trips_and_its_kernels_match_dense(shape, sparsity):
    rng = numpy.random.default_rng(hash((shape, sparsity)) % 2**32)
    for dtype, rtol in ((numpy.float64, 1e-12), (numpy.float32, 1e-5)):
        W = _sparse(rng, shape, sparsity, dtype)
        W[0] = 0  # an empty row, always
        csr = CSR.from_dense(W)
        assert csr.nnz == numpy.count_nonzero(W) and csr.data.dtype == dtype
        assert numpy.array_equal(csr.to_dense(), W)
        assert csr.nbytes == 4 * (shape[0] + 1) + csr.nnz * (4 + numpy.dtype(dtype).itemsize)
        x = rng.standard_normal((shape[1], 9)).astype(dtype)
        scale = numpy.abs(W) @ numpy.abs(x) + 1e-300  # the bound on the rounding of each sum
        assert numpy.all(numpy.abs(csr_matmul(csr, x) - W @ x) <= rtol * scale)
        xb, b = rng.standard_normal((4, shape[1])).astype(dtype), rng.standard_normal(shape[0]).astype(dtype)
        z = sparse_linear(xb, csr, b)
        assert z.shape == (4, shape[0]) and z.dtype == dtype
        bound = numpy.abs(xb) @ numpy.abs(W).T + numpy.abs(b) + 1e-300
        assert numpy.all(numpy.abs(z - (xb @ W.T + b)) <= rtol * bound)


def test_all_zero_matrix_gives_zeros_and_csr_checks_its_arrays():
    csr = CSR.from_dense(numpy.zeros((4, 6)))
    assert csr.nnz == 0 and list(csr.indptr) == [0] * 5
    assert numpy.array_equal(csr_matmul(csr, numpy.ones((6, 3))), numpy.zeros((4, 3)))
    with pytest.raises(ValueError):
        csr_matmul(csr, numpy.ones((5, 3)))
    with pytest.raises(ValueError):
        CSR.from_dense(numpy.zeros(3))


def test_sparse_linear_in_a_sequential_matches_the_dense_model():
    manual_seed(0)
    model = models.mlp((20, 16, 5))
    for p in model.parameters():
        p.data[numpy.abs(p.data) < 0.1] = 0
    sparse = nn.Sequential(*[SparseLinear.from_linear(m) if isinstance(m, nn.Linear) else m
                             for m in model])
    x = Tensor(numpy.random.default_rng(1).standard_normal((8, 20)).astype(numpy.float32))
    assert numpy.allclose(sparse(x).numpy(), model(x).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert sparse.state_dict() == {}


def test_time_sparse_vs_dense_reports_one_row_per_sparsity():
    rows = time_sparse_vs_dense(shape=(300, 784), batch=256, repeats=3)
    for r in rows:
        print(f"sparsity {r['sparsity']:.2f}  nnz {r['nnz']:6d}  dense {r['dense_s'] * 1e3:.3f} ms  "
              f"sparse {r['sparse_s'] * 1e3:.3f} ms  sparse/dense {r['ratio']:.2f}")
    assert [r["sparsity"] for r in rows] == [0.5, 0.8, 0.9, 0.95, 0.99]
    assert all(r["ratio"] > 0 for r in rows)


def test_kmeans_on_a_known_set_finds_the_clusters_from_the_linear_start():
    values = numpy.array([0.0, 0.1, 0.2, 5.0, 5.1, 9.8, 9.9, 10.0])
    centroids, labels = kmeans_1d(values, 3)
    assert numpy.allclose(centroids, [0.1, 5.05, 9.9])
    assert list(labels) == [0, 0, 0, 1, 1, 2, 2, 2]
    again = kmeans_1d(values[::-1], 3)  # deterministic, and blind to the order
    assert numpy.array_equal(again[0], centroids)
    few, labels = kmeans_1d(numpy.array([1.0, 1.0, 3.0]), 4)  # empty clusters keep their place
    assert numpy.allclose(few[labels], [1.0, 1.0, 3.0]) and numpy.all(numpy.diff(few) >= 0)


def _pruned_mlp(sizes, keep=0.1):
    manual_seed(0)
    model = models.mlp(sizes)
    masks = {}
    for name, p in model.named_parameters():
        if name.endswith("weight"):  # magnitude pruning, by hand (the pruning module is elsewhere)
            tau = numpy.quantile(numpy.abs(p.data), 1 - keep)
            masks[name] = numpy.abs(p.data) >= tau
            p.data *= masks[name]
    return model, masks


def test_sharing_keeps_weights_on_centroids_and_sums_member_gradients():
    model, masks = _pruned_mlp((12, 10, 4), keep=0.5)
    sharing = share_weights(model, bits={"0": 2, model[2]: 3}, masks=masks)
    assert sharing.names == ["0.weight", "2.weight"] and sharing.bits == {"0.weight": 2, "2.weight": 3}
    rng = numpy.random.default_rng(0)
    x = Tensor(rng.standard_normal((16, 12)).astype(numpy.float32))
    y = rng.integers(0, 4, 16)
    params = dict(model.named_parameters())
    for _ in range(3):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        before = {n: sharing.centroids[n].copy() for n in sharing.names}
        sharing.fine_tune_step(lr=0.1)
        for n in sharing.names:
            idx, mask, g = sharing.indices[n], sharing.masks[n], params[n].grad
            summed = [sum(float(g[i]) for i in zip(*numpy.nonzero(mask & (idx == k))))
                      for k in range(2 ** sharing.bits[n])]
            assert numpy.allclose(sharing.centroid_grads[n], summed, rtol=1e-6, atol=1e-9)
            assert numpy.allclose(sharing.centroids[n], before[n] - 0.1 * numpy.array(summed), atol=1e-6)
            w = params[n].data
            assert idx.dtype == numpy.uint8 and numpy.all(w[~mask] == 0)
            assert numpy.array_equal(w[mask], sharing.centroids[n][idx[mask]])  # exactly
            assert len(numpy.unique(w[mask])) <= 2 ** sharing.bits[n]
    with pytest.raises(KeyError):
        share_weights(model, bits={"nope": 2})


def test_huffman_lengths_are_optimal_on_a_dyadic_distribution_and_round_trip():
    counts = {0: 8, 1: 4, 2: 2, 3: 1, 4: 1}
    code = huffman.huffman_code(counts)
    assert {s: len(w) for s, w in code.items()} == {0: 1, 1: 2, 2: 3, 3: 4, 4: 4}
    assert code == huffman.huffman_code(dict(reversed(list(counts.items()))))  # deterministic
    assert huffman.mean_length(counts, code) == huffman.entropy(counts) == 1.875
    symbols = [s for s, c in counts.items() for _ in range(c)]
    data, n_bits, table = huffman.encode(symbols)
    assert n_bits == 30 and len(data) == 4
    assert list(huffman.decode(data, n_bits, table)) == symbols
    assert huffman.table_from_bytes(huffman.table_bytes(table)) == table
    assert huffman.encoded_bytes(data, n_bits, table) == 4 + 4 + 5 + 5 + 5
    assert huffman.huffman_code({7: 3}) == {7: "0"}
    assert list(huffman.decode(*huffman.encode([7, 7, 7]))) == [7, 7, 7]


def test_huffman_mean_length_is_within_one_bit_of_the_entropy():
    rng = numpy.random.default_rng(0)
    symbols = rng.geometric(0.15, size=20000) + rng.integers(0, 3, 20000) * 300
    counts = Counter(symbols.tolist())
    data, n_bits, table = huffman.encode(symbols)
    H, L = huffman.entropy(counts), n_bits / len(symbols)
    print(f"entropy {H:.3f} bits, Huffman {L:.3f} bits per symbol")
    assert H <= L <= H + 1 and math.isclose(L, huffman.mean_length(counts, table))
    assert numpy.array_equal(huffman.decode(data, n_bits, table), symbols)


def test_deep_compression_of_the_pruned_mlp_exceeds_20x(tmp_path):
    model, masks = _pruned_mlp((784, 300, 100, 10), keep=0.1)
    sharing = share_weights(model, bits=5, masks=masks)
    state = model.state_dict()
    sizes = deep_compression_bytes(state, masks, sharing, directory=str(tmp_path))
    assert sizes == deep_compression_bytes(state, masks, sharing)  # the files are the bytes
    print({k: round(v, 2) if isinstance(v, float) else v for k, v in sizes.items()})
    assert sizes["float32"] == 4 * 266610 + 3 * 8 + 3 * 4  # parameters, and each array's shape
    assert sizes["float32"] > sizes["pruned"] > sizes["shared"] > sizes["huffman"]
    assert sizes["huffman_ratio"] > 20
    for name in sharing.names:  # the Huffman streams alone rebuild the shared weight
        (idx, gaps) = [huffman.decode(*s) for s in huffman_streams(sharing, name)]
        assert numpy.array_equal(gaps, position_gaps(masks[name]))
        w = numpy.zeros(state[name].size, numpy.float32)
        w[numpy.cumsum(gaps + 1) - 1] = sharing.centroids[name][idx]
        assert numpy.array_equal(w.reshape(state[name].shape), state[name])
