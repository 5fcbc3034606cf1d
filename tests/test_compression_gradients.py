"""Gradient compressors (strategies/compression, MATH A6) on in-process worlds of 1-5 ranks:
the exchange agrees on every rank, bytes_sent is the measured count exactly, the lossless
limits are exact, QSGD is unbiased within its variance bound, error feedback loses nothing."""
import numpy as np
import pytest

import collectives
from strategies.compression import build

WORLDS = [1, 2, 3, 5]
SIZES = [1, 7, 1000, 10007]
NAMES = ["none", "fp16", "topk", "randomk", "qsgd", "sign"]
PSGD_SHAPES = [(13, 7), (5,)]          # a 13x7 weight and a bias of 5: n = 96


def gradient(rank, n, step=0, dtype=np.float32):
    return np.random.default_rng([rank, n, step]).standard_normal(n).astype(dtype)


def run(make, p, n, steps=1, shapes=None):
    """Per rank: (outputs, bytes measured, bytes by formula) over ``steps`` exchanges."""
    def body(comm):
        c, outs, measured, formula = make(), [], 0, 0.0
        for t in range(steps):
            g = gradient(comm.rank, n, t)
            formula += c.bytes_sent(comm.size, n, g.itemsize)
            before = comm.counters.bytes_sent
            outs.append(c.exchange(comm, g))
            measured += comm.counters.bytes_sent - before
        return outs, measured, formula
    return collectives.spawn(body, p, timeout=30)


def check_agree_and_bytes(results):
    first = results[0][0]
    for outs, _, _ in results:
        for a, b in zip(outs, first):
            assert np.array_equal(a, b)                        # the same array on every rank
    measured = sum(r[1] for r in results)
    formula = sum(r[2] for r in results)
    assert abs(measured - formula) < 1e-6 * max(1, measured)   # exactly, up to the float formula


@pytest.mark.parametrize("p", WORLDS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("name", NAMES)
def test_exchange_agrees_and_bytes_match(name, n, p):
    results = run(lambda: build(name, ratio=0.01, levels=4, seed=3), p, n, steps=2)
    check_agree_and_bytes(results)
    assert results[0][0][0].shape == (n,) and results[0][0][0].dtype == np.float32


@pytest.mark.parametrize("p", WORLDS)
def test_powersgd_agrees_and_bytes_match(p):
    results = run(lambda: build("powersgd", rank=2, shapes=PSGD_SHAPES), p, 96, steps=2)
    check_agree_and_bytes(results)
    assert results[0][2] == pytest.approx(2 * 2 * (13 + 7) * 4 * (p - 1) / p * 2 + 2 * 5 * 4 * (p - 1) / p * 2)


def exact_mean(p, n, step=0):
    return np.mean([gradient(r, n, step).astype(np.float64) for r in range(p)], axis=0)


@pytest.mark.parametrize("p", WORLDS)
def test_none_is_the_ring_mean_bit_for_bit(p):
    n = 1000
    out = run(lambda: build("none"), p, n)[0][0][0]
    ring = collectives.spawn(lambda comm: collectives.allreduce(comm, gradient(comm.rank, n), "ring", "mean",
                                                                check=False), p)[0]
    assert np.array_equal(out, ring)


@pytest.mark.parametrize("p", WORLDS)
@pytest.mark.parametrize("name", ["topk", "randomk"])
def test_full_density_sparsifiers_are_the_mean(name, p):
    out = run(lambda: build(name, ratio=1.0), p, 1000)[0][0][0]
    np.testing.assert_allclose(out, exact_mean(p, 1000), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("p", WORLDS)
def test_fp16_is_close(p):
    out = run(lambda: build("fp16"), p, 10007)[0][0][0]
    mean = exact_mean(p, 10007)
    assert np.abs(out - mean).max() <= 1e-3 * np.abs(mean).max()


def test_fp16_saturates_instead_of_overflowing():
    big = np.full(4, 1e6, np.float32)
    out = collectives.spawn(lambda comm: build("fp16").exchange(comm, big), 3)[0]
    assert np.isfinite(out).all() and np.allclose(out, 0.99 * 65504, rtol=1e-3)


def test_qsgd_is_unbiased_within_its_variance_bound():
    """Mean of N = 2000 draws within 4 standard errors of g on every entry: per entry a
    two-sided 4-sigma event has probability ~6e-5 (CLT), so ~3e-3 for all 50 (the seed is fixed)."""
    n, s, N = 50, 4, 2000
    g = np.random.default_rng(7).standard_normal(n)
    q = build("qsgd", levels=s, seed=11)
    draws = np.array([q.decompress(q.compress(g), n) for _ in range(N)])
    se = draws.std(axis=0, ddof=1) / np.sqrt(N)
    assert np.all(np.abs(draws.mean(axis=0) - g) <= 4 * se + 1e-12)
    variance = np.mean(np.sum((draws - g) ** 2, axis=1))
    assert variance <= min(n / s ** 2, np.sqrt(n) / s) * np.dot(g, g)


def test_qsgd_levels_fit_int8_and_the_norm_is_one_element():
    norm, levels = build("qsgd", levels=127).compress(gradient(0, 1000))
    assert norm.shape == (1,) and levels.dtype == np.int8 and np.abs(levels).max() <= 127


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_sign_payload_is_packed_bits_and_one_scale(n):
    g = gradient(0, n)
    scale, bits = build("sign", error_feedback=False).compress(g)
    assert bits.dtype == np.uint8 and bits.size == -(-n // 8) and scale.shape == (1,)
    decoded = build("sign", error_feedback=False).decompress((scale, bits), n)
    assert np.allclose(np.abs(decoded), np.abs(g).mean()) and np.all((decoded >= 0) == (g >= 0))


@pytest.mark.parametrize("name", ["topk", "randomk", "sign", "qsgd", "fp16"])
def test_error_feedback_loses_nothing(name):
    """sum_t D(C(g_t + e_t)) + e_T == sum_t g_t."""
    n, c = 1007, build(name, ratio=0.05, error_feedback=True)
    sent, true = np.zeros(n), np.zeros(n)
    for t in range(20):
        g = gradient(0, n, t, np.float64)
        sent += c.decompress(c.compress(g), n)
        true += g
    np.testing.assert_allclose(sent + c.residual, true, atol=1e-9)


@pytest.mark.parametrize("p", WORLDS)
def test_powersgd_full_rank_is_the_mean(p):
    mean = exact_mean(p, 96)
    out = run(lambda: build("powersgd", rank=7, shapes=PSGD_SHAPES), p, 96)[0][0][0]
    np.testing.assert_allclose(out, mean, rtol=1e-4, atol=1e-5)


def test_powersgd_error_feedback_reduces_the_error_on_a_fixed_gradient():
    g = np.random.default_rng(1).standard_normal(13 * 7 + 5)
    c = build("powersgd", rank=1, shapes=PSGD_SHAPES)
    sent, errors = np.zeros_like(g), []
    for t in range(1, 31):
        sent += collectives.spawn(lambda comm: c.exchange(comm, g), 1)[0]
        errors.append(np.linalg.norm(sent / t - g))
    assert errors[-1] < 0.2 * errors[0]


def test_dgc_warmup_ramps_density_and_momentum_correction_clears_sent():
    c = build("topk", ratio=0.01, warmup_steps=4, momentum_correction=0.9)
    ks = []
    for t in range(6):
        values, indices = c.compress(gradient(0, 1000, t))
        ks.append(values.size)
        assert np.all(c.v[indices] == 0) and np.all(c.u[indices] == 0)
    assert ks[0] == 250 and ks[-1] == 10 and ks == sorted(ks, reverse=True)


@pytest.mark.parametrize("name, params, word", [
    ("topk", {"ratio": 0}, "ratio"), ("randomk", {"ratio": 1.5}, "ratio"), ("qsgd", {"levels": 0}, "levels"),
    ("powersgd", {"rank": 0}, "rank"), ("zip", {}, "zip"), ("topk", {"density": 0.1}, "density")])
def test_bad_parameters_are_refused_by_name(name, params, word):
    with pytest.raises(ValueError, match=word):
        build(name, **params)
