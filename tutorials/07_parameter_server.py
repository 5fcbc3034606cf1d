"""Tutorial 7: a parameter server - one server, three workers (MATH A2, A3, A10, E7).

    mpirun -n 4 python -m mpi4py tutorials/07_parameter_server.py              (add --quick: faster)
    python tutorials/07_parameter_server.py --quick     # the same 4 ranks, as threads (tutorials/ranks.py)

Data parallelism (tutorial 4) has no centre: every rank all-reduces. A parameter server (A2)
has one. On K = 4 ranks (E7), rank 0 holds theta and no data, ranks 1-3 hold data, W = 3:

    worker k:   pull theta;  g_k = grad J(B_k; theta);  push g_k          B_k: its B/W rows
    server:     g = (1/W) sum_k g_k;  theta <- theta - alpha g;  serve theta back     (sync, F10)
    async (A3): theta <- theta - (alpha/W) g_k as soon as g_k arrives, computed on a theta
                tau updates old (its staleness: version at apply - version it was computed on)

Sync SGD waits for the slowest worker every step; async never waits, but applies stale
gradients. Which rows a worker trains on is the server's to say: an epoch is W x T chunks of
B/W rows, and each reply names the worker's next chunk, so under async a fast worker takes more
chunks than a slow one (strategies/parameter_server/schedule.py). This script
  1. runs the protocol by hand on the Comm interface (send, recv from ANY_SOURCE, Status.source)
     for three steps, each checked against the single process on the whole batch (float64, 1e-12);
  2. runs ps-sync through the runner (strategies/train.py): equal to the single process
     (float64, 1e-10), and the bytes of each role equal to the formula;
  3. slows worker 3 down three times (A10: --slow-rank 3 --slow-factor 3) and compares sync,
     async, sync with one backup worker and SSP (s = 2): each worker's steps/s, gradients
     applied/s, the chunks each worker computed, and async's staleness histogram against W - 1;
  4. ends with PASS or FAIL.
Read strategies/parameter_server/ alongside (docs/parameter_server.md is its map).
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

from collectives import ANY_SOURCE, Tag
from engine import Tensor, data, manual_seed, models
import engine.functional as F
from strategies import train
from strategies.parameters import cast_model, flat_parameters, load_flat_parameters

import ranks  # tutorials/ranks.py: 4 ranks from mpirun, or as threads here

X, y, _, _ = data.load_mnist()                                          # bundled 4,000 / 1,000
X = ((X - 0.5) / 0.5).astype(np.float64)
SERVER, LR, B = 0, 0.1, 60                                              # B: the GLOBAL batch, W = 3 | B


def build_mlp():
    manual_seed(0)                                                      # the same theta_0 everywhere (A1)
    return cast_model(models.build("mlp"), np.float64)


def gradient(model, rows):
    """grad J on ``rows`` of the training set, flat (n,), at the model's current theta (F9)."""
    model.zero_grad()
    F.cross_entropy(model(Tensor(X[rows])), y[rows]).backward()
    return np.concatenate([p.grad.ravel() for p in model.parameters()])


# -- 1. the protocol by hand -------------------------------------------------------------------------
def by_hand(comm, steps, say, checks):
    W = comm.size - 1                                                   # ranks 1 .. W are workers
    model = build_mlp()
    theta = flat_parameters(model)                                      # (n,) every rank's theta_0
    for step in range(steps):
        batch = np.arange(step * B, (step + 1) * B)                     # global batch `step`
        if comm.rank == SERVER:
            grads, arrived = np.empty((W + 1, theta.size)), []
            for _ in range(W):                                          # whoever is first
                status = comm.recv(grads[0], ANY_SOURCE, Tag.GRADIENT)  # into a scratch row ...
                grads[status.source] = grads[0]                         # ... filed under its sender
                arrived.append(status.source)
            g = grads[1:].mean(axis=0)                                  # (1/W) sum_k g_k  (F10)
            reference = theta - LR * gradient(model, batch)             # one process, all B rows
            theta -= LR * g                                             # F7, on the server only
            for worker in range(1, W + 1):
                comm.send(theta, worker, Tag.PARAMETERS)                # serve the new theta
            error = float(np.abs(theta - reference).max())
            load_flat_parameters(model, theta)
            say(f"   step {step}: pushes arrived from workers {arrived}; max |theta - theta_single| = {error:.1e}")
            checks[f"by hand, step {step}: server's theta == single process on the whole batch (1e-12)"] = error < 1e-12
        else:
            k = comm.rank - 1                                           # my rows of the batch: B/W
            comm.send(gradient(model, batch[k * B // W:(k + 1) * B // W]), SERVER, Tag.GRADIENT)   # push
            comm.recv(theta, SERVER, Tag.PARAMETERS)                    # pull
            load_flat_parameters(model, theta)
    say("")


# -- 2 and 3. through the runner -------------------------------------------------------------------
def runner(comm, strategy, steps, *flags, model="mlp", dtype="float32"):
    """The record of ``python -m strategies.train --strategy STRATEGY ...`` on ``comm``."""
    args = train.parse_args(["--strategy", strategy, "--model", model, "--dtype", dtype, "--batch-size", str(B),
                             "--epochs", "20", "--max-steps", str(steps), "--quiet", *flags], quiet=comm.rank != 0)
    return train.run(args, comm)


def sync_equals_single(comm, alone, steps, say, checks):
    folder = tempfile.mkdtemp() if comm.rank == SERVER else None        # rank 0 saves both models
    save = lambda name: ["--save-params", os.path.join(folder, name)] if folder else []
    ps = runner(comm, "ps-sync", steps, *save("ps.npz"), dtype="float64")
    if comm.rank == SERVER:
        runner(alone, "single", steps, *save("single.npz"), dtype="float64")
        with np.load(os.path.join(folder, "ps.npz")) as a, np.load(os.path.join(folder, "single.npz")) as b:
            error = max(float(np.abs(a[key] - b[key]).max()) for key in a)
        shutil.rmtree(folder)
        say(f"2. ps-sync through the runner, {steps} steps, float64: max |theta_ps - theta_single| = {error:.1e}")
        checks[f"ps-sync == single process after {steps} steps (1e-10, float64)"] = error <= 1e-10
    say(f"   {'role':<8}{'ranks':>6}{'bytes/rank/step':>17}{'formula':>11}   (worker: n + 16, server: W (n + 16): 16-byte headers)")
    for role, entry in ps["roles"].items():
        measured, formula = entry["bytes_sent_per_rank_per_step"], entry["formula_bytes_sent_per_rank_per_step"]
        say(f"   {role:<8}{len(entry['ranks']):>6}{measured:>17,.0f}{formula:>11,.0f}")
        checks[f"ps-sync: bytes per {role} per step == formula"] = bool(np.isclose(measured, formula, rtol=1e-12))
    say("")


def rates(record, per_apply):
    """Steps/s and seconds waiting / computing of each worker, gradients applied/s by the server,
    from the record's timeline (the same on every rank; the events it keeps: timeline.LIMIT)."""
    server, *workers = record["timeline"]                               # [[kind, start, end], ...] per rank
    steps, wait_over_compute = [], []
    for events in workers:
        seconds = lambda kind: sum(end - start for k, start, end in events if k == kind)
        pulls = [e for e in events if e[0] == "pull"]                   # one per step (one server)
        steps.append(len(pulls) / (pulls[-1][2] - events[0][1]))
        wait_over_compute.append(seconds("wait") / seconds("compute"))
    applies = [e for e in server if e[0] == "apply"]
    return steps, wait_over_compute, per_apply * len(applies) / (applies[-1][2] - server[0][1])


def straggler(comm, steps, say, checks):
    W = comm.size - 1
    slow = ["--slow-rank", "3", "--slow-factor", "3"]
    runs = {"sync": ("ps-sync", [], W), "async": ("ps-async", [], 1),       # (strategy, flags, gradients
            "sync, straggler": ("ps-sync", slow, W),                        #  that one apply applies)
            "async, straggler": ("ps-async", slow, 1),
            "sync + 1 backup, straggler": ("ps-sync", ["--backup-workers", "1", *slow], W - 1),
            "SSP s = 2, straggler": ("ps-ssp", ["--staleness", "2", *slow], 1)}
    say(f"3. LeNet-5 (its compute outweighs its 247 KB pushes), {steps} steps; worker 3 three times slower (A10)")
    say(f"   {'':<28}{'steps/s of workers 1 2 3':>25}{'applied/s':>11}{'dropped':>9}{'mean tau':>10}"
        f"{'chunks of workers 1 2 3':>26}")
    rate, waiting, histogram, mean_tau, chunks = {}, {}, {}, {}, {}
    for name, (strategy, flags, per_apply) in runs.items():
        r = runner(comm, strategy, steps, *flags, model="lenet5")
        rate[name], waiting[name], applied = rates(r, per_apply)
        histogram[name] = {int(tau): count for tau, count in r["staleness_histogram"].items()}
        mean_tau[name] = r["mean_staleness"]
        chunks[name] = [r["chunks_per_worker"][str(k)] for k in range(1, W + 1)]
        say(f"   {name:<28}{'':>4}" + "".join(f"{s:>7.0f}" for s in rate[name]) +
            f"{applied:>11.0f}{r['gradients_dropped']:>9}{r['mean_staleness']:>10.2f}{'':>5}"
            + "".join(f"{c:>7}" for c in chunks[name]))
    say("   (timings vary from run to run)")
    for name in ("async", "async, straggler"):
        say(f"   staleness histogram, {name + ':':<18}{histogram[name]}")
    say(f"   W - 1 = {W - 1}: a worker has one gradient in flight, so between its pull and its push at most the")
    say("   W - 1 others push: mean tau <= W - 1 (below it at the start, all on theta_0). The straggler's")
    say("   own gradients are the stalest: the other two push about 3 times each meanwhile.")
    say("   Server 0 hands out the chunks: under sync each worker gets its share of every step; under")
    say("   async the first to ask gets the next chunk, so workers 1 and 2 take what worker 3 does not")
    say("   get to; with a backup worker, worker 3's late pushes are dropped and it skips to the current")
    say("   step. Either way the epoch ends when the chunks do, not when worker 3 is done.\n")
    for name in ("async", "async, straggler"):
        checks[f"{name}: mean staleness <= W - 1"] = mean_tau[name] <= W - 1
    checks["ps-sync applies with staleness 0 only"] = set(histogram["sync"]) == {0}
    sync, asynchronous = rate["sync, straggler"], rate["async, straggler"]       # steps/s of workers 1 2 3
    checks["ps-sync, straggler: workers 1 and 2 keep worker 3's pace (steps/s within 10%)"] = (
        max(sync) < 1.1 * min(sync))
    checks["ps-sync, straggler: workers 1 and 2 wait for worker 3 longer than they compute"] = (
        min(waiting["sync, straggler"][:2]) > 1)
    checks["ps-async, straggler: workers 1 and 2 keep going (> 1.2x worker 3's steps/s)"] = (
        min(asynchronous[:2]) > 1.2 * asynchronous[2])
    checks["ps-sync: every worker computes one chunk per step"] = chunks["sync, straggler"] == [steps] * W
    checks["ps-async, straggler: workers 1 and 2 take more chunks than worker 3, none lost"] = (
        min(chunks["async, straggler"][:2]) > chunks["async, straggler"][2]
        and sum(chunks["async, straggler"]) == W * steps)


def main(comm, args):
    alone = comm.split(comm.rank)          # a world of one on every rank: the single-process reference
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    checks = {}
    if comm.size != 4:                     # E7 is 1 + 3, and worker 3 is the straggler
        say(f"this tutorial is MATH E7, 4 ranks (1 server + 3 workers); launched on {comm.size}")
        return ranks.verdict(comm, {"launched on 4 ranks": False})
    say(f"{comm.size} ranks: rank 0 the server, ranks 1-{comm.size - 1} workers; global batch {B}, "
        f"{B // (comm.size - 1)} rows per worker\n")
    say("1. the protocol by hand: workers push g_k (Tag.GRADIENT), the server takes them from ANY_SOURCE")
    by_hand(comm, 3, say, checks)
    sync_equals_single(comm, alone, 10 if args.quick else 60, say, checks)
    straggler(comm, 20 if args.quick else 50, say, checks)
    return ranks.verdict(comm, checks)                               # PASS or FAIL, on every rank


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps (used by the tests)")
    sys.exit(ranks.run(main, parser.parse_args(), world_size=4))
