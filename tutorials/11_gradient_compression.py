"""Tutorial 11: gradient compression for data parallelism - send less, lose nothing (MATH A6).

    mpirun -n 4 python -m mpi4py tutorials/11_gradient_compression.py         (add --quick: faster)
    python tutorials/11_gradient_compression.py --quick     # the same 4 ranks, as threads (tutorials/ranks.py)

Data parallelism (tutorial 4) all-reduces the whole gradient g (n floats) every step:
2 (p-1)/p * 4 n bytes per rank. A compressor C sends a payload much smaller than 4 n, and every
rank steps with the mean of what the payloads decode to, (1/p) sum_r D(C(g_r)):

    topk      the k = ratio n largest |g_i|, as (values, int32 indices)      all-gathered
    qsgd      Q(g_i) = ||g|| sgn(g_i) xi_i / s, xi_i rounded at random so E[Q(g)] = g
    sign      (||g||_1 / n) sgn(g): one bit per element and one scale
    powersgd  a gradient matrix M ~ P Q^T, P = M Q (m x r), Q = M^T P (k x r): r (m + k) numbers
    error feedback: v = g + e, send C(v), e <- v - D(C(v)): what is not sent now is sent later

This script
  1. compresses one fixed gradient (a random vector with a few large entries) by hand in NumPy
     and with strategies/compression/, equal; QSGD's mean over many draws -> g; PowerSGD's
     factors of a matrix against its best rank r (the SVD); each payload's bytes against 4 n;
     then each compressor's exchange on the 4 ranks == the mean of the decoded payloads, and the
     bytes counted by comm.counters == the compressor's bytes_sent formula;
  2. runs error feedback for 60 steps: the residual e_t stays bounded and
     sum_t D(C(v_t)) + e_T == sum_t g_t (float64, 1e-12); without it the lost mass grows;
  3. trains the MLP through the runner (python -m strategies.train --strategy dp --compress ...):
     dp, top-k 1 % with EF, PowerSGD rank 2, sign with EF: loss, bytes per rank per step equal
     to the formula, and how many times fewer bytes than dp;
  4. ends with PASS or FAIL.
Read strategies/compression/ (its __init__ has the table of bytes) and strategies/compressed_dp.py.
"""
import argparse
import math
import sys
from types import SimpleNamespace

import numpy as np

import collectives
from engine import models
from strategies import loop, train
from strategies.compression import build
from strategies.compression.sparsifiers import k_of

import ranks  # tutorials/ranks.py: 4 ranks from mpirun, or as threads here

N, RATIO, LEVELS, RANK = 1000, 0.01, 8, 2                  # the fixed gradient's size; the compressors'
SHAPE = (40, 25)                                            # g as a matrix, for PowerSGD (40 x 25 = N)


def fixed_gradient(seed=0, dtype=np.float32):
    """A gradient as they look: mostly small entries, a few large ones (8 of 1000)."""
    rng = np.random.default_rng(seed)
    g = 0.01 * rng.standard_normal(N)
    g[rng.choice(N, 8, replace=False)] = rng.choice([-1.0, 1.0], 8) * rng.uniform(0.5, 1.0, 8)
    return g.astype(dtype)


def low_rank_matrix(seed=0, dtype=np.float32):
    """A 40 x 25 gradient matrix of rank about 2 plus noise (layer gradients are nearly low rank)."""
    rng = np.random.default_rng(seed)
    M = 3 * np.outer(rng.standard_normal(40), rng.standard_normal(25)) + np.outer(
        rng.standard_normal(40), rng.standard_normal(25)) + 0.1 * rng.standard_normal(SHAPE)
    return M.astype(dtype)


def nbytes(payload):
    """Bytes of a payload (arrays, or lists of arrays: PowerSGD's [P], [Q])."""
    return sum(nbytes(a) if isinstance(a, (list, tuple)) else a.nbytes for a in payload)


# -- 1. what each compressor sends -----------------------------------------------------------------
def what_is_sent(say, checks):
    g = fixed_gradient()
    dense = 4 * N
    say(f"1. one fixed gradient g, n = {N} float32 ({dense:,} B dense): 8 entries of size 0.5-1, the rest ~0.01")
    sizes = {"dense": dense}

    k = k_of(RATIO, N)                                               # max(1, round(ratio n))
    by_hand = np.argsort(-np.abs(g), kind="stable")[:k]             # the k largest |g_i|
    topk = build("topk", ratio=RATIO, error_feedback=False)
    values, indices = payload = topk.compress(g)
    decoded = topk.decompress(payload, N)
    hand = np.zeros_like(g)
    hand[by_hand] = g[by_hand]
    same = set(by_hand.tolist()) == set(indices.tolist()) and np.array_equal(decoded, hand)
    sizes["topk 1 %"] = nbytes(payload)
    say(f"   top-k, k = {k}: by hand {sorted(by_hand.tolist())} == library {sorted(indices.tolist())}: {same}; "
        f"||g - D(C(g))|| / ||g|| = {np.linalg.norm(g - decoded) / np.linalg.norm(g):.3f}")
    checks["top-k by hand (argsort of |g|) == the library's indices and decode"] = same

    qsgd = build("qsgd", levels=LEVELS, seed=0)                      # unbound: its RNG is default_rng(0)
    rng = np.random.default_rng(0)                                   # the same stream, by hand
    norm = np.sqrt(np.dot(g, g))
    r = np.abs(g) / norm * LEVELS                                    # in [0, s]
    low = np.floor(r)
    xi = low + (rng.random(N) < r - low)                             # up with probability r - l
    levels = np.where(g < 0, -xi, xi).astype(np.int8)
    norm_sent, signed = payload = qsgd.compress(g)
    same = bool(np.array_equal(signed, levels) and norm_sent[0] == norm)
    sizes[f"qsgd s = {LEVELS}"] = nbytes(payload)
    draws = 4000
    mean = np.mean([qsgd.decompress(qsgd.compress(g), N) for _ in range(draws)], axis=0, dtype=np.float64)
    sigma = norm / (2 * LEVELS * math.sqrt(draws))                   # std of the mean, at most
    bias = float(np.abs(mean - g).max())
    say(f"   qsgd, s = {LEVELS}: levels by hand == library: {same}; nonzero levels {np.count_nonzero(levels)} of {N}; "
        f"mean of {draws} draws: max |mean - g| = {bias:.4f} (5 sigma: {5 * sigma:.4f})")
    checks["qsgd: stochastic rounding by hand == the library (same RNG stream)"] = same
    checks[f"qsgd unbiased: the mean of {draws} quantisations is within 5 sigma of g"] = bias < 5 * sigma

    sign = build("sign", error_feedback=False)
    scale_sent, bits = payload = sign.compress(g)
    hand = np.abs(g).sum() / N * np.where(g >= 0, 1, -1)             # (||g||_1 / n) sgn(g)
    same = bool(np.allclose(sign.decompress(payload, N), hand, rtol=1e-6, atol=0))
    sizes["sign"] = nbytes(payload)
    say(f"   sign: scale ||g||_1/n = {scale_sent[0]:.5f}, {bits.size} bytes of packed bits; by hand == library: {same}")
    checks["scaled sign by hand == the library"] = same

    M = low_rank_matrix()
    powersgd = build("powersgd", rank=RANK, shapes=[SHAPE], seed=0)
    Q0 = np.random.default_rng(0).standard_normal((SHAPE[1], RANK)).astype(M.dtype)   # its shared Q_0
    P = np.linalg.qr(M @ Q0)[0]                                      # P = M Q, orthonormalised
    Q = M.T @ P                                                      # Q = M^T P
    flat, Ps, Qs = payload = powersgd.compress(M.reshape(-1))
    decoded = powersgd.decompress(payload, M.size).reshape(SHAPE)
    same = bool(np.allclose(decoded, P @ Q.T, rtol=0, atol=1e-5))
    sizes[f"powersgd r = {RANK}"] = nbytes(payload)
    U, S, Vt = np.linalg.svd(M.astype(np.float64))
    best = np.linalg.norm(M - (U[:, :RANK] * S[:RANK]) @ Vt[:RANK]) / np.linalg.norm(M)
    one_step = np.linalg.norm(M - decoded) / np.linalg.norm(M)
    Qi = Q0.astype(np.float64)
    for _ in range(5):                                               # warm starts: a power iteration
        Pi = np.linalg.qr(M @ Qi)[0]
        Qi = M.T @ Pi
    five = np.linalg.norm(M - Pi @ Qi.T) / np.linalg.norm(M)
    say(f"   powersgd, a {SHAPE[0]} x {SHAPE[1]} matrix, r = {RANK}: P Q^T by hand == library: {same}; "
        f"||M - P Q^T|| / ||M||: one step {one_step:.4f}, five warm steps {five:.4f}, best rank {RANK} (SVD) {best:.4f}")
    checks["PowerSGD's P Q^T by hand == the library"] = same
    checks["PowerSGD: five warm-started power steps reach the best rank-r error (within 1 %)"] = five <= 1.01 * best

    say(f"   {'payload':<16}{'bytes':>7}{'of dense':>10}   formula")
    formulas = {"dense": "4 n", "topk 1 %": "k (4 + 4)", f"qsgd s = {LEVELS}": "n + 4 (int8 levels, the norm)",
                "sign": "ceil(n/8) + 4", f"powersgd r = {RANK}": "r (m + k) 4"}
    expected = {"dense": 4 * N, "topk 1 %": k * 8, f"qsgd s = {LEVELS}": N + 4, "sign": math.ceil(N / 8) + 4,
                f"powersgd r = {RANK}": RANK * sum(SHAPE) * 4}
    for name, size in sizes.items():
        say(f"   {name:<16}{size:>7,}{dense / size:>9.1f}x   {formulas[name]} = {expected[name]:,}")
    checks["every payload's bytes == its formula"] = sizes == expected
    say("")


def exchanges(comm, say, checks):
    """Each compressor's exchange on this world: the mean of the decoded payloads, bytes == formula."""
    p = comm.size
    g = fixed_gradient() + 0.01 * np.random.default_rng(comm.rank + 1).standard_normal(N).astype(np.float32)
    others = [fixed_gradient() + 0.01 * np.random.default_rng(r + 1).standard_normal(N).astype(np.float32)
              for r in range(p)]                                      # every rank's g_r, for the check
    say(f"   exchange(comm, g_r) on {p} ranks (g_r: g plus each rank's noise):")
    say(f"   {'compressor':<12}{'bytes/rank (counted)':>21}{'bytes_sent':>12}{'of dp':>8}   == mean_r D(C(g_r))")
    exact, counted_ok = {}, {}
    for name in ("none", "fp16", "topk", "randomk", "qsgd", "sign", "powersgd"):
        make = lambda: build(name, ratio=RATIO, levels=LEVELS, rank=RANK, error_feedback=False, seed=0,
                             shapes=[SHAPE])
        c = make()
        before = comm.counters.bytes_sent
        mean = c.exchange(comm, g)
        sent = np.array([comm.counters.bytes_sent - before], np.float64)
        counted = collectives.allreduce(comm, sent, "tree", "sum")[0] / p      # mean over ranks
        if name in ("none", "fp16", "powersgd"):                              # summed on the way: compare
            reference = np.mean([g_r for g_r in others], axis=0)             # with the true mean
            error = float(np.abs(mean - reference).max())
            what = f"|. - mean g_r| <= {error:.0e}"
            ok = error < {"none": 1e-6, "fp16": 2e-3, "powersgd": 1.0}[name]
        else:                                                                 # decode every rank's own
            decoded = []                                                      # payload in rank order
            for r, g_r in enumerate(others):
                local = make()
                local.bind(SimpleNamespace(rank=r))                           # rank r's RNG stream
                decoded.append(local.decompress(local.compress(g_r), N))
            ok = bool(np.allclose(mean, np.sum(decoded, axis=0) / p, rtol=0, atol=1e-7))
            what = f"{ok}"
        formula = c.bytes_sent(p, N, 4)
        dp = build("none").bytes_sent(p, N, 4)
        exact[name], counted_ok[name] = ok, counted == formula
        say(f"   {name:<12}{counted:>21,.0f}{formula:>12,.0f}{dp / formula:>7.1f}x   {what}")
    checks[f"every compressor's exchange on {p} ranks == the mean of what the payloads decode to"] = all(
        exact.values())
    checks[f"every compressor on {p} ranks: bytes counted by comm.counters == bytes_sent(p, n, 4)"] = all(
        counted_ok.values())
    say("   (none, fp16 and powersgd add on the way - ring all-reduce; the others all-gather the payloads)\n")


# -- 2. error feedback ------------------------------------------------------------------------------
def error_feedback(say, checks, steps=60):
    say(f"2. error feedback on {steps} steps of g_t = g + noise (float64), e_t: what was not sent yet")
    say(f"   {'':<16}" + "".join(f"{'||e_' + str(t) + '||':>10}" for t in (1, 2, 5, 10, 30, steps))
        + f"{'||sum g - sum sent - e||':>26}{'without EF: ||sum g - sum sent||':>35}")
    for name in ("topk", "sign"):
        norms, totals = {}, {}
        for feedback in (True, False):
            c = build(name, ratio=RATIO, error_feedback=feedback)
            sum_g, sum_sent, residual_norms = np.zeros(N), np.zeros(N), []
            for t in range(steps):
                g_t = fixed_gradient(dtype=np.float64) + 0.01 * np.random.default_rng(100 + t).standard_normal(N)
                sent = c.decompress(c.compress(g_t), N)              # D(C(g_t + e_t)), this rank's decode
                sum_g += g_t
                sum_sent += sent
                residual_norms.append(np.linalg.norm(c.residual) if feedback else 0.0)
            e = c.residual if feedback else np.zeros(N)
            norms[feedback], totals[feedback] = residual_norms, float(np.linalg.norm(sum_g - sum_sent - e))
        label = f"{name} 1 % + EF" if name == "topk" else f"{name} + EF"
        say(f"   {label:<16}" + "".join(f"{norms[True][t - 1]:>10.3f}" for t in (1, 2, 5, 10, 30, steps))
            + f"{totals[True]:>26.1e}{totals[False]:>35.2f}")
        checks[f"{name} + EF: sum_t sent + e_T == sum_t g_t (1e-12)"] = totals[True] < 1e-12
        checks[f"{name} + EF: what is still owed, ||e_T||, < what no EF lost for good"] = (
            np.linalg.norm(e) < totals[False])
    say("   EF telescopes: v_t - sent_t = e_{t+1} and v_t = g_t + e_t, so sum_t sent_t + e_T = sum_t g_t exactly:")
    say("   nothing is lost, only late. The residual grows while the small entries pile up; top-k sends")
    say("   them once they outgrow the large ones, sign only as its scale ||v||_1/n catches up (slowly,")
    say("   on a gradient with a few large entries: 8 of 1000 here).\n")


# -- 3. through the runner --------------------------------------------------------------------------
RUNS = {"dp": [], "topk 1 % + EF": ["--compress", "topk", "--ratio", "0.01", "--error-feedback"],
        "powersgd r = 2": ["--compress", "powersgd", "--rank", "2"],
        "sign + EF": ["--compress", "sign", "--error-feedback"]}


def formula(name, p, shapes):
    """Bytes per rank per step, from the table in strategies/compression/__init__.py (float32)."""
    n = sum(math.prod(s) for s in shapes)
    if name == "dp":
        return 2 * (p - 1) / p * n * 4
    if name.startswith("topk"):
        return (p - 1) * k_of(0.01, n) * (4 + 4)
    if name.startswith("sign"):
        return (p - 1) * (math.ceil(n / 8) + 4)
    elements = sum(2 * (s[0] + math.prod(s[1:])) if len(s) >= 2 else math.prod(s) for s in shapes)
    return 2 * (p - 1) / p * elements * 4                           # powersgd, r = 2


def runner(comm, dataset, steps, say, checks):
    p = comm.size
    shapes = [tuple(q.shape) for q in models.build("mlp").parameters()]
    say(f"3. the MLP ({sum(math.prod(s) for s in shapes):,} parameters) through the runner, dp on {p} ranks, "
        f"{steps} steps, global batch 64, lr 0.1")
    say(f"   {'':<16}{'final loss':>11}{'test acc':>10}{'bytes/rank/step':>17}{'formula':>10}{'fewer than dp':>15}")
    records = {}
    for name, flags in RUNS.items():
        args = train.parse_args(["--strategy", "dp", "--model", "mlp", "--epochs", "5", "--max-steps", str(steps),
                                 "--quiet", *flags], quiet=comm.rank != 0)
        records[name] = r = train.run(args, comm, dataset)
        measured, expected = r["bytes_sent_per_rank_per_step"], formula(name, p, shapes)
        [entry] = r["roles"].values()
        checks[f"{name}, {p} ranks: bytes per rank per step == formula"] = bool(
            np.isclose(measured, expected, rtol=1e-12)
            and np.isclose(entry["formula_bytes_sent_per_rank_per_step"], expected, rtol=1e-12))
        say(f"   {name:<16}{r['final_loss']:>11.4f}{r['final_test_accuracy']:>10.3f}{measured:>17,.0f}"
            f"{expected:>10,.0f}{records['dp']['bytes_sent_per_rank_per_step'] / measured:>14.1f}x")
    say("   (losses: float32 through a BLAS, the digits can differ on another machine)\n")
    dp = records["dp"]
    for name, r in records.items():
        if name != "dp":
            checks[f"{name}: sends at least 10x fewer bytes than dp"] = (
                dp["bytes_sent_per_rank_per_step"] >= 10 * r["bytes_sent_per_rank_per_step"])
            checks[f"{name}: learns (final loss < 0.95 ln 10, the loss of a uniform guess)"] = (
                r["final_loss"] < 0.95 * math.log(10))
    digests = np.array([list(bytes.fromhex(r["params_sha256"])) for r in records.values()], np.int64)
    low = collectives.allreduce(comm, digests.copy(), "tree", "min")
    high = collectives.allreduce(comm, digests.copy(), "tree", "max")
    checks[f"all {p} replicas identical under every compressor (SHA-256)"] = bool(np.array_equal(low, high))


def main(comm, args):
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    checks = {}
    say(f"{comm.size} ranks; gradient compression (MATH A6), strategies/compression/\n")
    what_is_sent(say, checks)
    exchanges(comm, say, checks)
    error_feedback(say, checks)
    runner(comm, args.dataset, 30 if args.quick else 120, say, checks)
    return ranks.verdict(comm, checks)                               # PASS or FAIL, on every rank


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps (used by the tests)")
    arguments = parser.parse_args()
    arguments.dataset = loop.load_data(train.parse_args([]))         # the bundled MNIST, loaded once
    sys.exit(ranks.run(main, arguments, world_size=4))
