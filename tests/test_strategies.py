"""Strategies in the in-process world (ranks as threads): fast, no mpirun.

Every distributed strategy is compared with the single-process computation it equals, with
the tolerance stated (STYLE habit 8). The same comparisons under real mpirun, at 2 and 4
ranks and for every all-reduce, are in tests/mpi/strategy_checks.py (test_strategies_mpi.py).

Tolerances: float64 runs of a few dozen steps agree to 1e-12 (sums in another order differ
by an ulp, about 1e-16, and SGD does not amplify that much over so few steps).
"""
import types

import numpy as np
import pytest

from strategies import STRATEGIES, DataParallel, Gossip, LocalSGD, NaiveDataParallel, Topology, train
from strategies.base import Single
from strategies.loader import RankLoader
from strategies.parameters import averaged_copy, broadcast_parameters, flat_parameters
from strategies.traffic import allreduce_bytes

import collectives
import engine.functional as F
from engine import Tensor, data, manual_seed, nn, optim
from engine.threads import set_blas_threads

TOL64 = 1e-12


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """Ranks as threads must not each start a BLAS thread per core (see engine.threads.set_blas_threads)."""
    previous = set_blas_threads(1)
    yield
    if previous is not None:
        set_blas_threads(previous)


def half_mse(pred, target):
    """(1/2n) sum_i (yhat_i - y_i)^2: MATH F4's J divided by n, so gradients are means (F9)."""
    return ((pred - target) ** 2).mean() * 0.5


def train_loop(comm, build, X, y, loss_fn, make_opt, batch_size, steps, strategy_cls, seed=0, **kwargs):
    """``steps`` steps of ``strategy_cls`` on this rank's rows of each global batch; returns the
    final flat parameters of the strategy's model (theta_bar for local SGD / gossip)."""
    manual_seed(seed)
    model = build()
    strategy = strategy_cls(model, comm, **kwargs)
    opt = make_opt(model.parameters())
    loader, done = RankLoader(X, y, batch_size, strategy.local_rows(batch_size), seed=seed), 0
    while done < steps:
        for xb, yb in loader:
            strategy.train_step(opt, loss_fn, xb, yb)
            done += 1
            if done == steps:
                break
    return flat_parameters(strategy.eval_model(comm))


def single(build, X, y, loss_fn, make_opt, batch_size, steps, **kw):
    return collectives.spawn(lambda comm: train_loop(comm, build, X, y, loss_fn, make_opt,
                                                     batch_size, steps, Single, **kw), 1)[0]


def distributed(K, build, X, y, loss_fn, make_opt, batch_size, steps, cls, **kw):
    """Every rank's result (a list of K flat parameter vectors)."""
    return collectives.spawn(lambda comm: train_loop(comm, build, X, y, loss_fn, make_opt,
                                                     batch_size, steps, cls, **kw), K)


def small_mlp(sizes=(20, 16, 4), dtype=np.float64):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b, dtype=dtype)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


def classification(n=256, d=20, classes=4, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))                                   # (n, d) float64
    y = (X[:, :classes] + 0.3 * rng.standard_normal((n, classes))).argmax(axis=1)   # (n,)
    return X, y


def sgd(lr):
    return lambda params: optim.SGD(params, lr=lr)


# -- MATH worked examples ------------------------------------------------------------------
def test_E1_two_nodes_half_the_data_each_reach_the_single_node_theta():
    """MATH E1: J(theta) = 1/2 sum (y_i - theta x_i)^2, theta_0 = 0, two nodes with half each."""
    X, y = data.linear_regression_e1(n=100, dtype=np.float64)

    def build():
        model = nn.Linear(1, 1, bias=False, dtype=np.float64)
        model.weight.data[...] = 0.0                                  # theta_0 = 0
        return model

    args = (build, X, y, half_mse, sgd(0.5), 100, 200)                # full batch: plain GD
    one = single(*args)
    two = distributed(2, *args, DataParallel)
    least_squares = float((X * y).sum() / (X * X).sum())              # theta* = sum xy / sum x^2
    assert np.abs(two[0] - one).max() <= TOL64 and np.array_equal(two[0], two[1])
    assert abs(one[0] - least_squares) < 1e-9


def test_E4_sync_sgd_on_10_nodes_equals_one_node_and_recovers_theta():
    """MATH E4: 10 nodes x 1,000 samples, lr 0.1, theta_0 = [0.1 .. 0.5], 5-parameter linear model."""
    X, y = data.linear_regression_e4(num_nodes=10, samples_per_node=1000, dtype=np.float64)

    def build():
        model = nn.Linear(5, 1, bias=False, dtype=np.float64)
        model.weight.data[...] = data.THETA0_E4
        return model

    args = (build, X, y, half_mse, sgd(0.1), 500, 60)                 # 50 rows per node per step
    one = single(*args)
    ten = distributed(10, *args, DataParallel)
    assert max(np.abs(theta - one).max() for theta in ten) <= TOL64
    assert np.abs(one - data.TRUE_THETA_E4).max() < 0.02


def test_E5_mlp_with_adam_data_parallel_equals_single():
    """MATH E5: 5 inputs, Dense(10, ReLU) -> Dense(1), MSE, Adam, trained data-parallel (K = 4)."""
    X, y = data.linear_regression_e4(num_nodes=4, samples_per_node=64, dtype=np.float64)
    args = (lambda: small_mlp((5, 10, 1)), X, y, F.mse_loss, lambda p: optim.Adam(p, lr=0.01), 64, 30)
    one = single(*args)
    four = distributed(4, *args, DataParallel)
    assert max(np.abs(theta - one).max() for theta in four) <= TOL64


def test_E6_gradients_summed_then_divided_by_world_size_equal_dataparallel_and_single():
    """MATH E6: multi-class MLP; all-reduce(sum) / K by hand == DataParallel (op mean) == single."""
    X, y = classification()

    class SumThenDivide(NaiveDataParallel):
        def after_backward(self):
            for p in self.model.parameters():
                p.grad = collectives.allreduce(self.comm, p.grad, "ring", "sum") / self.comm.size

    args = (small_mlp, X, y, F.cross_entropy, sgd(0.1), 32, 20)
    one = single(*args)
    by_hand = distributed(4, *args, SumThenDivide)
    bucketed = distributed(4, *args, DataParallel)
    assert np.abs(by_hand[0] - one).max() <= TOL64
    assert np.abs(bucketed[0] - by_hand[0]).max() <= TOL64


# -- data parallel ---------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["ring", "tree", "recursive-doubling", "naive"])
@pytest.mark.parametrize("K", [2, 3])
def test_data_parallel_equals_single_for_every_allreduce(algorithm, K):
    X, y = classification(n=240)
    args = (small_mlp, X, y, F.cross_entropy, sgd(0.2), 24, 25)
    one = single(*args)
    thetas = distributed(K, *args, DataParallel, algorithm=algorithm, bucket_bytes=2048)
    assert all(np.array_equal(thetas[0], t) for t in thetas)           # replicas bit-identical
    assert np.abs(thetas[0] - one).max() <= TOL64


def test_naive_and_bucketed_agree_and_buckets_save_messages():
    X, y = classification()

    def run(cls, **kw):
        def on(comm):
            theta = train_loop(comm, small_mlp, X, y, F.cross_entropy, sgd(0.1), 32, 5, cls, **kw)
            return theta, comm.counters.messages_sent, comm.counters.bytes_sent
        return collectives.spawn(on, 4)[0]

    naive, bucketed = run(NaiveDataParallel), run(DataParallel)
    assert np.abs(naive[0] - bucketed[0]).max() <= TOL64
    assert bucketed[1] < naive[1] / 2                                  # 4 tensors -> 1 bucket
    assert bucketed[2] == naive[2]                                     # same bytes (traffic.py)


@pytest.mark.parametrize("bucket_bytes", [600, 2048, 1 << 20])
def test_overlapped_buckets_give_the_same_parameters_bit_for_bit(bucket_bytes):
    """--overlap starts each bucket's all-reduce from a gradient hook during backward: the same
    sums of the same gradients in the same order, so the same bits as without it."""
    X, y = classification()
    args = (small_mlp, X, y, F.cross_entropy, lambda p: optim.SGD(p, lr=0.1, momentum=0.9), 32, 12)
    plain = distributed(3, *args, DataParallel, bucket_bytes=bucket_bytes)
    overlapped = distributed(3, *args, DataParallel, bucket_bytes=bucket_bytes, overlap=True)
    assert all(np.array_equal(a, b) for a, b in zip(plain, overlapped))


def test_overlap_sends_a_bucket_that_backward_never_completed():
    """A parameter outside this step's graph fires no hook: its bucket goes after backward,
    with zeros, and no rank waits forever."""
    class WithUnused(nn.Module):
        def __init__(self):
            self.used, self.unused = nn.Linear(20, 4, dtype=np.float64), nn.Linear(3, 3, dtype=np.float64)

        def forward(self, x):
            return self.used(x)

    X, y = classification()
    def on(comm):
        manual_seed(0)
        model = WithUnused()
        dp = DataParallel(model, comm, bucket_bytes=100, overlap=True)
        dp.train_step(optim.SGD(model.parameters(), lr=0.1), F.cross_entropy,
                      Tensor(X[comm.rank * 16:(comm.rank + 1) * 16]), Tensor(y[comm.rank * 16:(comm.rank + 1) * 16]))
        dp.overlap.close()
        return [p.grad.copy() for p in model.unused.parameters()], flat_parameters(model.used)

    results = collectives.spawn(on, 2, timeout=20)
    assert all(not g.any() for g in results[0][0])
    assert np.array_equal(results[0][1], results[1][1])


def test_buckets_are_filled_in_backward_order():
    manual_seed(0)
    model = small_mlp()                                                # W1 (16,20) b1 W2 (4,16) b2
    dp = collectives.spawn(lambda comm: DataParallel(model, comm, bucket_bytes=600), 1)[0]
    buckets = collectives.plan_buckets([p.data for p in dp.params], dp.bucket_bytes)  # as each step plans
    shapes = [[dp.params[i].shape for i in bucket] for bucket in buckets]
    assert shapes[0] == [(4,), (4, 16)]                                # last layer first: 544 B
    assert shapes[-1] == [(16, 20)]


def test_broadcast_gives_every_rank_rank0s_parameters():
    def on(comm):
        manual_seed(comm.rank)                                         # deliberately different
        model = small_mlp()
        broadcast_parameters(model, comm)
        return flat_parameters(model)

    thetas = collectives.spawn(on, 3)
    manual_seed(0)
    rank0 = flat_parameters(small_mlp())
    assert all(np.array_equal(t, rank0) for t in thetas)


# -- local SGD and gossip --------------------------------------------------------------------
def test_local_sgd_with_period_1_and_plain_sgd_is_data_parallel():
    """(1/N) sum_i (theta - a g_i) = theta - a (1/N) sum_i g_i  (MATH F11 with H = 1 is F10)."""
    X, y = classification()
    args = (small_mlp, X, y, F.cross_entropy, sgd(0.1), 32, 24)
    dp = distributed(4, *args, DataParallel)
    local = distributed(4, *args, LocalSGD, period=1)
    assert np.abs(local[0] - dp[0]).max() <= TOL64


def test_local_sgd_with_period_4_differs_but_averages_every_4_steps():
    X, y = classification()

    class Counted(LocalSGD):                      # counters from after the initial broadcast
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.comm.counters.reset()

    def on(comm):
        theta = train_loop(comm, small_mlp, X, y, F.cross_entropy, sgd(0.1), 32, 8, Counted, period=4)
        return theta, comm.counters.bytes_sent

    results = collectives.spawn(on, 4)
    args = (small_mlp, X, y, F.cross_entropy, sgd(0.1), 32, 8)
    dp = distributed(4, *args, DataParallel)
    assert np.abs(results[0][0] - dp[0]).max() > 1e-6
    assert all(np.array_equal(results[0][0], r[0]) for r in results)  # in sync after step 8
    mean_bytes = sum(r[1] for r in results) / 4
    assert mean_bytes == 2 * allreduce_bytes("ring", 4, results[0][0].nbytes)   # 2 averages in 8 steps


def test_gossip_topology_and_mixing_matrix():
    assert Topology("ring", 2).neighbours(0) == [1]
    assert Topology("ring", 4).neighbours(0) == [1, 3]
    assert Topology("ring", 3).neighbours(1) == [0, 2]
    W = Topology("ring", 5).mixing_matrix()
    assert np.allclose(W.sum(axis=0), 1) and np.allclose(W.sum(axis=1), 1) and np.allclose(W, W.T)
    lambda2 = sorted(np.abs(np.linalg.eigvals(W)))[-2]
    assert lambda2 == pytest.approx((1 + 2 * np.cos(2 * np.pi / 5)) / 3)
    with pytest.raises(ValueError, match="unknown topology"):
        Topology("star", 4)


def test_gossip_mixing_keeps_the_mean_and_shrinks_the_consensus_distance_by_lambda2():
    """With no training, theta <- W theta: theta_bar stays, ||theta_i - theta_bar|| shrinks by
    lambda_2 = (1 + 2 cos(2 pi / K)) / 3 per step at most (1/3 for K = 4)."""
    def on(comm):
        manual_seed(0)
        model = small_mlp()
        gossip = Gossip(model, comm)
        for p in model.parameters():                                   # make the replicas differ
            p.data += np.random.default_rng(comm.rank).standard_normal(p.shape)
        mean0, distances = averaged_copy(model, comm), [gossip.consensus_distance(comm)]
        for _ in range(5):
            gossip.mix()
            distances.append(gossip.consensus_distance(comm))
        return flat_parameters(mean0), flat_parameters(averaged_copy(model, comm)), distances

    mean0, mean5, distances = collectives.spawn(on, 4)[0]
    assert np.abs(mean5 - mean0).max() < 1e-12
    for before, after in zip(distances, distances[1:]):
        assert after <= before / 3 * (1 + 1e-9)


def test_gossip_on_two_ranks_is_exact_averaging():
    X, y = classification()
    args = (small_mlp, X, y, F.cross_entropy, sgd(0.1), 32, 10)
    gossip = distributed(2, *args, Gossip)
    local = distributed(2, *args, LocalSGD, period=1)
    assert np.array_equal(gossip[0], gossip[1])
    assert np.abs(gossip[0] - local[0]).max() <= TOL64


# -- the runner ----------------------------------------------------------------------------
def flags(*argv):
    return train.parse_args(["--quiet", *argv])


@pytest.mark.parametrize("argv, K, message", [
    (["--strategy", "gossip"], 1, "needs at least 2 ranks"),
    (["--batch-size", "63"], 2, "must divide evenly"),
    (["--strategy", "local-sgd", "--period", "0"], 2, "--period must be >= 1"),
    (["--strategy", "single"], 2, "at most 1 rank"),
    (["--algorithm", "mpi"], 2, "run under mpirun"),
    (["--epochs", "0"], 1, "--epochs must be >= 1"),
    (["--batch-size", "8192"], 1, "larger than the 4000 training samples"),
])
def test_runner_rejects_invalid_combinations(argv, K, message):
    comm = types.SimpleNamespace(size=K, rank=0)
    assert message in train.check(flags(*argv), comm, n_train=4000)


@pytest.mark.parametrize("argv, message", [(["--strategy", "ps"], "invalid choice: 'ps'"),
                                           (["--model", "resnet"], "invalid choice"),
                                           (["--algorithm", "butterfly"], "invalid choice"),
                                           (["--topology", "star"], "invalid choice: 'star'")])
def test_runner_rejects_unknown_names_without_exiting(argv, message):
    with pytest.raises(train.UsageError, match=message):
        train.parse_args(argv)


def test_runner_choices_come_from_the_registries():
    parser = train.build_parser()
    choices = {a.dest: a.choices for a in parser._actions}
    assert set(choices["strategy"]) == set(STRATEGIES) >= {"single", "dp", "local-sgd", "gossip"}
    assert set(choices["model"]) == set(engine_models())


def test_help_shows_every_default_and_each_strategys_own_flags():
    text = train.build_parser().format_help()
    assert "the GLOBAL batch, split over the ranks (default: 64)" in " ".join(text.split())
    for group, flag in (("local-sgd:", "--period"), ("gossip:", "--topology"), ("dp:", "--overlap")):
        assert group in text and flag in text.split(group, 1)[1]


def test_rank_0_shows_a_progress_bar_unless_quiet(capsys):
    args = train.parse_args(["--max-steps", "3", "--epochs", "1"])
    collectives.spawn(lambda comm: train.run(args, comm), 2)
    err = capsys.readouterr().err
    assert "epoch 1:" in err and "/3 " in err       # tqdm on stderr, rank 0 only; total: the epoch's steps
    args.quiet = True
    collectives.spawn(lambda comm: train.run(args, comm), 2)
    assert "epoch 1:" not in capsys.readouterr().err


def engine_models():
    from engine.models import MODELS
    return MODELS


def test_a_problem_on_one_rank_stops_every_rank_with_one_message(capsys):
    """Rank 2 alone cannot start (say, its --out directory is missing): nobody hangs."""
    def on(comm):
        args = flags("--max-steps", "2")
        args.out = "/no/such/dir/r.json" if comm.rank == 0 else None
        return train.run(args, comm)

    records = collectives.spawn(on, 3, timeout=20)
    assert all("no such directory" in r["error"] for r in records[:1]) and all("error" in r for r in records)
    assert capsys.readouterr().err.count("error") == 1


def test_runner_in_process_records_and_matches_single():
    common = ["--dtype", "float64", "--max-steps", "12", "--epochs", "1", "--batch-size", "64"]
    one = collectives.spawn(lambda comm: train.run(flags("--strategy", "single", *common), comm), 1)[0]
    two = collectives.spawn(lambda comm: train.run(flags("--strategy", "dp", *common), comm), 2)
    for key in ("loss", "test_accuracy", "bytes_sent_per_rank"):       # averaged: same everywhere
        assert two[0]["epochs"][0][key] == two[1]["epochs"][0][key]
    assert two[0]["epochs"][0]["loss"] == pytest.approx(one["epochs"][0]["loss"], abs=1e-12)
    assert two[0]["final_test_accuracy"] == one["final_test_accuracy"]
    assert two[0]["bytes_sent_per_rank_per_step"] == two[0]["formula_bytes_per_rank_per_step"] \
        == allreduce_bytes("ring", 2, two[0]["n_params"] * 8)
    for key in ("strategy", "world_size", "epochs", "wall_seconds", "samples_per_second",
                "bytes_sent_per_rank", "final_test_accuracy"):
        assert key in two[0]


@pytest.mark.skipif("lenet5" not in engine_models(), reason="engine.models has no lenet5 yet")
def test_runner_feeds_images_to_a_convolutional_model_and_dp_still_equals_single():
    common = ["--model", "lenet5", "--dtype", "float64", "--max-steps", "3", "--epochs", "1", "--batch-size", "16"]
    one = collectives.spawn(lambda comm: train.run(flags("--strategy", "single", *common), comm), 1)[0]
    two = collectives.spawn(lambda comm: train.run(flags("--strategy", "dp", *common), comm), 2)[0]
    assert two["epochs"][0]["loss"] == pytest.approx(one["epochs"][0]["loss"], abs=1e-12)


def test_rank_loader_takes_any_rows_of_the_epoch_it_is_iterating():
    X, y = np.arange(40, dtype=np.float64).reshape(20, 2), np.arange(20)
    loader = RankLoader(X, y, 4, slice(1, 3), seed=3)
    with pytest.raises(RuntimeError, match="no epoch yet"):
        loader.take(0, slice(0, 2))
    for step, (xb, yb) in enumerate(loader):
        same_x, same_y = loader.take(step, slice(1, 3))
        assert np.array_equal(xb.numpy(), same_x.numpy()) and np.array_equal(yb.numpy(), same_y.numpy())
        whole = loader.take(step, slice(0, 4))[1].numpy()
        assert np.array_equal(whole[1:3], yb.numpy())
    with pytest.raises(IndexError, match="step 5 outside the epoch's 0 .. 4"):
        loader.take(5, slice(0, 4))
