"""Tutorial 4: synchronous data parallelism on 4 MPI ranks (MATH A1, F9, F10, E1, E4).

    mpirun -n 4 python -m mpi4py tutorials/04_data_parallel.py              (add --quick: faster)
    mpirun -n 4 python -m mpi4py tutorials/04_data_parallel.py --plot dp.png
    python tutorials/04_data_parallel.py --quick     # the same 4 ranks, as threads (tutorials/ranks.py)

Tutorial 2 trained one copy of the model per rank, all identical, none talking. Tutorial 3
built the all-reduce. Put together, one step of data parallelism on K ranks is

    rank k:   g_k = (1/|B_k|) sum_{x in B_k} grad J(x; theta)       F9   its B/K rows of the batch
    every k:  g   = (1/K) sum_k g_k                                 F10  one all-reduce (op mean)
    every k:  theta <- theta - alpha g                              F7   the same update everywhere

and because every share has the same size, g is exactly the gradient of the whole global batch
B: K ranks at batch B compute what one process computes at batch B, only faster. This script
  1. computes one step by hand: g_k on each rank, the all-reduce, and g on the full batch;
  2. counts what strategies.NaiveDataParallel (one all-reduce per tensor) and
     strategies.DataParallel (gradients in buckets, MATH A6) send, against 2 (K-1)/K n;
  3. trains the MLP data-parallel and, on every rank alone, single-process at the same global
     batch, and compares the loss curves and the parameters (float64: equal to 1e-10);
  4. reproduces MATH E1 (2 nodes, half the data each, linear regression from theta_0 = 0) on
     ranks 0-1, and MATH E4 (10 nodes of 1,000 samples, lr 0.1) in the threads world;
  5. ends with PASS or FAIL.
Read strategies/base.py and strategies/data_parallel.py alongside (about 250 lines together).
"""
import argparse
import hashlib
import sys

import numpy as np

import collectives
from engine import Tensor, data, manual_seed, models, nn, optim
import engine.functional as F
from strategies import DataParallel, NaiveDataParallel
from strategies.base import Single
from strategies.loader import RankLoader
from strategies.parameters import cast_model, flat_parameters
from strategies.traffic import allreduce_bytes

import ranks  # tutorials/ranks.py: 4 ranks from mpirun, or as threads here

X, y, X_test, y_test = data.load_mnist()                                # bundled 4,000 / 1,000
X, X_test = ((X - 0.5) / 0.5).astype(np.float64), ((X_test - 0.5) / 0.5).astype(np.float64)


def build_mlp():
    manual_seed(0)                                                      # the same theta_0 everywhere (A1)
    return cast_model(models.build("mlp"), np.float64)


# -- 1. one step by hand --------------------------------------------------------------------------
def one_step_by_hand(comm, B, say, checks):
    K = comm.size
    model = build_mlp()
    rows = slice(comm.rank * B // K, (comm.rank + 1) * B // K)          # my share of rows 0 .. B-1
    F.cross_entropy(model(Tensor(X[:B][rows])), y[:B][rows]).backward() # F9: g_k, my rows only
    g_k = np.concatenate([p.grad.ravel() for p in model.parameters()])  # (n,) my gradient
    g = collectives.allreduce(comm, g_k, "ring", "mean")                # F10: (1/K) sum_k g_k
    model.zero_grad()
    F.cross_entropy(model(Tensor(X[:B])), y[:B]).backward()             # all B rows on this rank
    g_full = np.concatenate([p.grad.ravel() for p in model.parameters()])
    error = float(np.abs(g - g_full).max())
    say(f"1. one step: ||g_k - g_full|| on rank 0 = {np.linalg.norm(g_k - g_full):.3f} (a share is not the batch),")
    say(f"   max |(1/K) sum_k g_k - g_full| = {error:.1e}   (F10 holds up to rounding)\n")
    checks["F10: the mean of the K shares' gradients is the full batch's gradient (1e-12)"] = error < 1e-12


# -- 2. what the two DataParallel classes send ------------------------------------------------------
def what_they_send(comm, metrics, B, say, checks):
    K = comm.size
    rows = slice(comm.rank * B // K, (comm.rank + 1) * B // K)
    say("2. one step of each class; counters of this rank (the bucketed one also fills buckets in")
    say("   backward order, last layer first, so that an overlapping version could start early)")
    n_bytes = sum(p.data.nbytes for p in build_mlp().parameters())
    say(f"   {'class':<20}{'messages':>10}{'bytes (mean over ranks)':>26}{'2 (K-1)/K n':>14}")
    for cls in (NaiveDataParallel, DataParallel):
        model = build_mlp()
        strategy = cls(model, comm)                                     # broadcasts rank 0's theta_0
        comm.counters.reset()
        strategy.train_step(optim.SGD(model.parameters(), lr=0.1), F.cross_entropy,
                            Tensor(X[:B][rows]), Tensor(y[:B][rows]))
        sent = collectives.allreduce(metrics, np.array([comm.counters.bytes_sent], float), "tree", "mean")[0]
        say(f"   {cls.__name__:<20}{comm.counters.messages_sent:>10}{sent:>26,.0f}"
            f"{allreduce_bytes('ring', K, n_bytes):>14,.0f}")
        checks[f"{cls.__name__}: bytes per rank == 2 (K-1)/K n"] = np.isclose(
            sent, allreduce_bytes("ring", K, n_bytes), rtol=1e-12)
    say("")


# -- 3. train: data parallel vs single process at the same global batch ---------------------------
def train_both(comm, alone, metrics, B, steps, say, checks):
    """The loss curves of one process (on ``alone``) and of data parallelism (on ``comm``)."""
    K = comm.size
    curves = {}
    for name, cls, world in (("single process", Single, alone), (f"data parallel, {K} ranks", DataParallel, comm)):
        model = build_mlp()
        strategy = cls(model, world)
        opt = optim.SGD(model.parameters(), lr=0.1)
        loader, losses = RankLoader(X, y, B, strategy.local_rows(B), seed=0), []
        while len(losses) < steps:
            for xb, yb in loader:
                step = strategy.train_step(opt, F.cross_entropy, xb, yb)    # StepResult(loss_sum, rows)
                mean = np.array([step.loss_sum / step.rows])                # this rank's mean loss
                losses.append(collectives.allreduce(world, mean, "tree", "mean", check=False)[0])
                if len(losses) == steps:
                    break
        curves[name] = (losses, flat_parameters(model))
    (single_losses, theta_single), (dp_losses, theta_dp) = curves.values()
    error = float(np.abs(theta_dp - theta_single).max())
    say(f"3. {steps} steps of SGD (lr 0.1) on the MLP, float64:")
    say(f"   loss at steps 1, {steps // 2}, {steps}: single {single_losses[0]:.4f} {single_losses[steps // 2 - 1]:.4f} "
        f"{single_losses[-1]:.4f} | dp {dp_losses[0]:.4f} {dp_losses[steps // 2 - 1]:.4f} {dp_losses[-1]:.4f}")
    say(f"   max |theta_dp - theta_single| = {error:.1e}; largest loss difference "
        f"{max(abs(a - b) for a, b in zip(single_losses, dp_losses)):.1e}\n")
    checks[f"data parallel == single process after {steps} steps (1e-10, float64)"] = error <= 1e-10
    digest = np.frombuffer(hashlib.sha256(theta_dp.tobytes()).digest(), np.uint8).copy()
    digests = collectives.gather(metrics, digest)                       # (K, 32) on rank 0
    if comm.rank == 0:                                                  # SHA-256 of each replica
        checks[f"all {K} replicas bit-identical (SHA-256)"] = bool((digests == digests[0]).all())
    return single_losses, dp_losses


# -- 4. MATH E1 and E4 ---------------------------------------------------------------------------
def regression(comm, X, y, theta0, lr, batch, steps, cls):
    """Linear model without bias from theta0, loss (1/2n) sum (y - X theta)^2, ``steps`` steps."""
    model = nn.Linear(X.shape[1], 1, bias=False, dtype=np.float64)
    model.weight.data[...] = theta0
    strategy = cls(model, comm)
    opt = optim.SGD(model.parameters(), lr=lr)
    loader, done = RankLoader(X, y, batch, strategy.local_rows(batch)), 0
    while done < steps:
        for xb, yb in loader:
            strategy.train_step(opt, lambda pred, t: ((pred - t) ** 2).mean() * 0.5, xb, yb)
            done += 1
            if done == steps:
                break
    return model.weight.data.ravel().copy()


def worked_examples(comm, alone, say, checks):
    rank, K = comm.rank, comm.size
    X1, y1 = data.linear_regression_e1(n=100, dtype=np.float64)
    pair = comm.split(0 if rank < 2 else None) if K >= 2 else None     # ranks 0 and 1: "two nodes"
    if pair is not None:
        theta_two = regression(pair, X1, y1, 0.0, 1.0, 100, 100, DataParallel)   # each node: 50 samples
        theta_one = regression(alone, X1, y1, 0.0, 1.0, 100, 100, Single)
        exact = float((X1 * y1).sum() / (X1 * X1).sum())
        say(f"4. MATH E1: two nodes reach theta = {theta_two[0]:.6f}, one node {theta_one[0]:.6f}, "
            f"least squares sum xy / sum x^2 = {exact:.6f}")
        if rank == 0:
            checks["E1: two nodes == one node, and == least squares"] = (
                abs(theta_two[0] - theta_one[0]) < 1e-12 and abs(theta_one[0] - exact) < 1e-9)

    X4, y4 = data.linear_regression_e4(num_nodes=10, samples_per_node=1000, dtype=np.float64)
    theta0 = np.array(data.THETA0_E4)
    theta_ten = collectives.spawn(lambda c: regression(c, X4, y4, theta0, 0.1, 1000, 100, DataParallel), 10)
    theta_one = regression(alone, X4, y4, theta0, 0.1, 1000, 100, Single)
    error = max(float(np.abs(t - theta_one).max()) for t in theta_ten)
    say(f"   MATH E4: 10 nodes (threads) x 1,000 samples, lr 0.1, theta_0 = {data.THETA0_E4}, 100 steps:")
    say(f"   theta = {np.round(theta_ten[0], 3)} (true {data.TRUE_THETA_E4}); max |10 nodes - 1 node| = {error:.1e}\n")
    checks["E4: 10 nodes == 1 node (1e-12), theta within 0.02 of the truth"] = (
        error < 1e-12 and float(np.abs(theta_one - data.TRUE_THETA_E4).max()) < 0.02)


# -- plot and verdict ------------------------------------------------------------------------------
def plot(path, single_losses, dp_losses, B, K):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(single_losses, lw=3, alpha=0.4, label=f"single process, batch {B}")
    ax.plot(dp_losses, "--", label=f"data parallel, {K} ranks x {B // K}")
    ax.set(xlabel="step", ylabel="training loss", title="MATH F10: the same loss curve")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(comm, args):
    rank, K = comm.rank, comm.size
    alone = comm.split(rank)               # a world of one on every rank: the single-process reference
    metrics = comm.split(0, name="metrics", counted=False)   # looking at results: not in the counters
    say = print if rank == 0 else (lambda *a, **k: None)
    checks = {}
    B = 64 - 64 % K                                                     # the GLOBAL batch, K | B
    say(f"{K} ranks; global batch B = {B}, so each rank takes B/K = {B // K} rows of it\n")
    one_step_by_hand(comm, B, say, checks)
    what_they_send(comm, metrics, B, say, checks)
    single_losses, dp_losses = train_both(comm, alone, metrics, B, 40 if args.quick else 300, say, checks)
    worked_examples(comm, alone, say, checks)
    if args.plot and rank == 0:
        plot(args.plot, single_losses, dp_losses, B, K)
        say(f"loss curves written to {args.plot}")

    return ranks.verdict(comm, checks)                               # PASS or FAIL, on every rank


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps (used by the tests)")
    parser.add_argument("--plot", metavar="FILE", default=None, help="write the loss curves to this PNG")
    sys.exit(ranks.run(main, parser.parse_args(), world_size=4))
