"""Tutorial 5: talk less - local SGD and gossip on 4 MPI ranks (MATH F11, A6).

    mpirun -n 4 python -m mpi4py tutorials/05_local_sgd_and_gossip.py              (--quick: faster)
    mpirun -n 4 python -m mpi4py tutorials/05_local_sgd_and_gossip.py --plot ls.png
    python tutorials/05_local_sgd_and_gossip.py --quick   # the same 4 ranks, as threads (tutorials/ranks.py)

Data parallelism (tutorial 4) all-reduces n gradient bytes every step. Two ways to send less:

  local SGD (F11)    every rank steps alone H times, then all average their PARAMETERS:
                         theta_i <- theta_i - alpha grad J_i(theta_i);   every H steps theta_i <- (1/N) sum_j theta_j
                     traffic per rank per step: 2 (N-1)/N n / H    (H times less)
  gossip (A6)        every step, each rank averages with its neighbours on a ring only:
                         theta_i <- (theta_{i-1} + theta_i + theta_{i+1}) / 3
                     traffic per rank per step: 2 n, whatever N is; no global synchronisation

The price: the replicas drift apart between averages. We measure it with the consensus
distance  sqrt((1/N) sum_i ||theta_i - theta_bar||^2)  and evaluate theta_bar. This script
  1. checks that local SGD with H = 1 and plain SGD IS data parallelism (float64, 1e-10);
  2. shows the mixing step alone shrinking the consensus distance by lambda_2 of the mixing matrix
     (1/3 per step on a ring of 4) while keeping theta_bar;
  3. trains the MLP with dp, local SGD (H = 4, 16) and gossip from the same theta_0 and the same
     batches, and prints loss, test accuracy, consensus distance and bytes per step (= formula);
  4. ends with PASS or FAIL.
Read strategies/local_sgd.py and strategies/gossip.py alongside.
"""
import argparse
import sys

import numpy as np

import collectives
from engine import data, manual_seed, models, optim
import engine.functional as F
from strategies import DataParallel, Gossip, LocalSGD, Topology
from strategies.loader import RankLoader
from strategies.parameters import averaged_copy, cast_model, flat_parameters

import ranks  # tutorials/ranks.py: 4 ranks from mpirun, or as threads here

X, y, X_test, y_test = data.load_mnist()                                # bundled 4,000 / 1,000
X, X_test = (X - 0.5) / 0.5, (X_test - 0.5) / 0.5
WATCH = 64                                 # steps whose consensus distance is measured (it costs an all-reduce)


def build_mlp(dtype=np.float32):
    manual_seed(0)                                                      # the same theta_0 everywhere
    return cast_model(models.build("mlp"), dtype)


def train(comm, metrics, cls, steps, dtype=np.float32, **kwargs):
    """``steps`` SGD steps of ``cls`` on this rank's rows; per-step mean loss, and the consensus
    distance after each of the first WATCH steps and after the last one."""
    B = 64 - 64 % comm.size                # the GLOBAL batch, N | B
    model = build_mlp(dtype)
    strategy = cls(model, comm, **kwargs)
    comm.counters.reset()                                               # count training only
    opt = optim.SGD(model.parameters(), lr=0.1)
    loader, losses, distances = RankLoader(X.astype(dtype), y, B, strategy.local_rows(B)), [], []
    while len(losses) < steps:
        for xb, yb in loader:
            step = strategy.train_step(opt, F.cross_entropy, xb, yb)        # StepResult(loss_sum, rows)
            mean = np.array([step.loss_sum / step.rows])                    # this rank's mean loss
            losses.append(collectives.allreduce(metrics, mean, "tree", "mean", check=False)[0])
            if len(losses) <= WATCH or len(losses) == steps:
                distances.append(strategy.consensus_distance(metrics))
            if len(losses) == steps:
                break
    sent = collectives.allreduce(metrics, np.array([comm.counters.bytes_sent], float), "tree", "mean")[0]
    return dict(strategy=strategy, losses=losses, distances=distances, bytes_per_step=sent / steps,
                accuracy=strategy.evaluate(X_test, y_test, metrics), theta=flat_parameters(model))


# -- 1. H = 1 is data parallelism ---------------------------------------------------------------
def local_sgd_h1_is_data_parallel(comm, metrics, say, checks):
    steps = 30
    dp = train(comm, metrics, DataParallel, steps, np.float64)
    local = train(comm, metrics, LocalSGD, steps, np.float64, period=1)
    error = float(np.abs(dp["theta"] - local["theta"]).max())
    say(f"1. {steps} steps, float64: max |theta_local-sgd(H=1) - theta_dp| = {error:.1e}")
    say("   (1/N) sum_i (theta - a g_i) = theta - a (1/N) sum_i g_i: averaging parameters after one")
    say("   step is averaging gradients before it\n")
    checks["local SGD, H = 1, plain SGD == data parallel (1e-10, float64)"] = error <= 1e-10


# -- 2. the mixing step alone --------------------------------------------------------------------
def mixing_alone(comm, metrics, say, checks):
    rank, N = comm.rank, comm.size
    topology = Topology("ring", N)
    W = topology.mixing_matrix()
    lambda2 = sorted(np.abs(np.linalg.eigvals(W)))[-2] if N > 1 else 0.0
    model = build_mlp(np.float64)
    gossip = Gossip(model, comm)
    for p in model.parameters():                                        # replicas made to differ
        p.data += np.random.default_rng(rank).standard_normal(p.shape)
    mean_before, distances = flat_parameters(averaged_copy(model, metrics)), []
    for _ in range(6):
        distances.append(gossip.consensus_distance(metrics))
        gossip.mix()
    drift = float(np.abs(flat_parameters(averaged_copy(model, metrics)) - mean_before).max())
    say(f"2. gossip on a ring of {N}: rank {rank}'s neighbours {gossip.peers}; mixing matrix W =")
    say("   " + str(np.round(W, 3)).replace("\n", "\n   "))
    say("   consensus distance over 6 mixing steps: " + " ".join(f"{d:.3g}" for d in distances))
    say(f"   ratio per step {distances[1] / distances[0]:.3f} <= lambda_2(W) = {lambda2:.3f}; "
        f"theta_bar moved by {drift:.1e}\n")
    checks["mixing keeps theta_bar and shrinks the consensus distance by lambda_2 per step"] = (
        drift < 1e-12 and all(b <= a * lambda2 * (1 + 1e-9) + 1e-12 for a, b in zip(distances, distances[1:])))


# -- 3. train four ways ---------------------------------------------------------------------------
def train_four_ways(comm, metrics, steps, say, checks):
    N = comm.size
    runs = {"data parallel": train(comm, metrics, DataParallel, steps),
            "local SGD, H = 4": train(comm, metrics, LocalSGD, steps, period=4),
            "local SGD, H = 16": train(comm, metrics, LocalSGD, steps, period=16)}
    if N >= 2:
        runs["gossip (ring)"] = train(comm, metrics, Gossip, steps)
    n_bytes = sum(p.data.nbytes for p in build_mlp().parameters())
    say(f"3. {steps} steps, MLP, SGD lr 0.1, global batch {64 - 64 % N} on {N} ranks "
        f"(float32, n = {n_bytes:,} bytes)")
    say(f"   {'strategy':<20}{'final loss':>11}{'test acc':>10}{'consensus':>11}{'bytes/rank/step':>17}{'formula':>11}")
    for name, r in runs.items():
        s = r["strategy"]
        formula = s.bytes_per_step()[s.role]                            # {role: bytes per step}, by formula
        tail = float(np.mean(r["losses"][-10:]))
        say(f"   {name:<20}{tail:>11.4f}{r['accuracy']:>10.3f}{r['distances'][-1]:>11.2e}"
            f"{r['bytes_per_step']:>17,.0f}{formula:>11,.0f}")
        checks[f"{name}: bytes per rank per step == formula"] = bool(
            np.isclose(r["bytes_per_step"], formula, rtol=1e-12))
        checks[f"{name}: learns (test accuracy > 0.6)"] = r["accuracy"] > 0.6
    say("   (loss: mean of the last 10 steps; consensus: after the last step, 0 right after an average)\n")
    return runs


def plot(path, runs, N):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, r in runs.items():
        smooth = np.convolve(r["losses"], np.ones(10) / 10, mode="valid")
        left.plot(np.arange(10, len(r["losses"]) + 1), smooth, label=name)
        right.plot(np.arange(1, WATCH + 1), r["distances"][:WATCH], label=name)
    left.set(xlabel="step", ylabel="training loss (10-step mean)", title=f"{N} ranks, same batches")
    right.set(xlabel="step", ylabel="consensus distance",
              title="sqrt(mean_i ||theta_i - theta_bar||^2), first steps")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(comm, args):
    metrics = comm.split(0, name="metrics", counted=False)   # looking at the model: not in the counters
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    checks = {}
    local_sgd_h1_is_data_parallel(comm, metrics, say, checks)
    if comm.size >= 2:
        mixing_alone(comm, metrics, say, checks)
    runs = train_four_ways(comm, metrics, 64 if args.quick else 400, say, checks)
    if args.plot and comm.rank == 0:
        plot(args.plot, runs, comm.size)
        say(f"curves written to {args.plot}")

    return ranks.verdict(comm, checks)                               # PASS or FAIL, on every rank


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps (used by the tests)")
    parser.add_argument("--plot", metavar="FILE", default=None, help="write loss and consensus curves to this PNG")
    sys.exit(ranks.run(main, parser.parse_args(), world_size=4))
