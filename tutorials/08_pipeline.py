"""Tutorial 8: pipeline parallelism - the model cut into stages, micro-batches in flight (MATH A4, A5).

    mpirun -n 4 python -m mpi4py tutorials/08_pipeline.py              (add --quick: faster)
    python tutorials/08_pipeline.py --quick     # the same 4 ranks, as threads (tutorials/ranks.py)

Data parallelism (tutorial 4) copies the whole model to every rank. A pipeline (A4) cuts it:
f = f_{p-1} o ... o f_0, stage s = f_s on rank s. Stage s receives h_{s-1} from rank s - 1
(Tag.ACTIVATION), computes h_s = f_s(h_{s-1}) and sends it on; the backward sends
dL/dh_{s-1} back to rank s - 1 (Tag.ACTIVATION_GRAD). Each rank holds and updates 1/p of the
model, and on its own would idle while the others work; so the batch is cut into M
micro-batches that follow each other down the pipe (A5). Which rank does which forward and
backward when is a SCHEDULE, and the idle share of a step is the BUBBLE:

    naive        F(m) B(m), one micro-batch at a time     bubble (p-1)/p
    GPipe        every forward, then every backward       bubble (p-1)/(M+p-1), stash M
    1F1B         p-r-1 forwards, then one F one B ...     bubble (p-1)/(M+p-1), stash min(M, p-r)
    interleaved  v model chunks per rank (Megatron)       bubble (p-1)/(vM+p-1)

(stash: the micro-batches whose activations rank r holds at once, waiting for their backward).
This script
  1. runs a forward and backward through 2 stages by hand with comm.send/recv, on a tiny MLP,
     once with the whole batch and once with M = 4 micro-batches (gradients add up in p.grad),
     each checked against one process on the whole batch (float64, 1e-12);
  2. shows the schedules as data (strategies/pipeline/schedules.py): rank 0's op list for GPipe
     and 1F1B at p = 4, M = 4, every rank's order of compute, the bubble the simulator finds
     (strategies/pipeline/simulator.py) against the formulas, and the stash peaks;
  3. trains mlp7 through the runner (--strategy pipeline) with naive, GPipe, 1F1B and interleaved:
     each equal to the single process (float64, 1e-10), bytes per stage equal to the formula;
  4. measures the bubble: every forward padded to 10 ms and backward to 20 ms
     (--emulate-compute 0.01,0.02), GPipe at p = 4, M = 8 against 3/11 (a timing: within 15 %);
  5. ends with PASS or FAIL.
Read strategies/pipeline/ alongside (its __init__.py is the table of contents).
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

import collectives
import engine.functional as F
from collectives import Tag
from engine import Tensor, data, manual_seed, models, no_grad
from strategies import loop, train
from strategies.parameters import cast_model
from strategies.pipeline import partition, schedules, simulator

import ranks  # tutorials/ranks.py: 4 ranks from mpirun, or as threads here

X, y, _, _ = data.load_mnist()                                          # bundled 4,000 / 1,000
X = ((X - 0.5) / 0.5).astype(np.float64)
B = 48                                                                  # the batch of one step


# -- 1. two stages by hand ---------------------------------------------------------------------------
def tiny_mlp():
    manual_seed(0)                                                      # the same theta_0 everywhere (A1)
    return cast_model(models.mlp((784, 32, 16, 10)), np.float64)        # Linear ReLU | Linear ReLU Linear


def flat_grads(module):
    return np.concatenate([p.grad.ravel() for p in module.parameters()])


def two_stages(comm, stage, M):
    """One forward and backward of the batch's B rows through 2 stages, as M micro-batches in
    GPipe's order (every forward, then every backward); ``comm.rank ^ 1`` is the other stage.
    Returns this stage's flat parameter gradient, summed over the micro-batches."""
    model = tiny_mlp()
    mine = model[:2] if stage == 0 else model[2:]                       # f_0: 784 -> 32; f_1: 32 -> 10
    other, b, stash = comm.rank ^ 1, B // M, {}
    for m in range(M):                                                  # forwards
        rows = slice(m * b, (m + 1) * b)
        if stage == 0:
            h = mine(Tensor(X[rows]))                                   # h_0(m), (b, 32)
            comm.send(h.data, other, Tag.ACTIVATION)                    # -> stage 1
            stash[m] = h                                                # kept for its backward
        else:
            h0 = np.empty((b, 32))
            comm.recv(h0, other, Tag.ACTIVATION)
            h0 = Tensor(h0, requires_grad=True)                         # so backward fills h0.grad
            loss = F.cross_entropy(mine(h0), y[rows]) * (1.0 / M)       # mean of M means = the mean (F9)
            stash[m] = (h0, loss)
    for m in range(M):                                                  # backwards
        if stage == 0:
            grad = np.empty((b, 32))
            comm.recv(grad, other, Tag.ACTIVATION_GRAD)                 # dL/dh_0(m)
            stash.pop(m).backward(Tensor(grad))                         # chain rule through f_0 (F6)
        else:
            h0, loss = stash.pop(m)
            loss.backward()                                             # p.grad += over m
            comm.send(np.ascontiguousarray(h0.grad), other, Tag.ACTIVATION_GRAD)   # -> stage 0
    return flat_grads(mine)


def by_hand(comm, say, checks):
    reference = tiny_mlp()                                              # one process, all B rows
    F.cross_entropy(reference(Tensor(X[:B])), y[:B]).backward()
    stage, M = comm.rank % 2, (1 if comm.rank < 2 else 4)               # ranks 0 -> 1: M = 1; 2 -> 3: M = 4
    grad = two_stages(comm, stage, M)
    error = np.zeros(comm.size)
    error[comm.rank] = np.abs(grad - flat_grads(reference[:2] if stage == 0 else reference[2:])).max()
    error = collectives.allreduce(comm, error, "tree", "sum")           # every rank's, on every rank
    say("1. two stages by hand: f_0 = Linear(784, 32) ReLU on one rank, f_1 = Linear(32, 16) ReLU")
    say(f"   Linear(16, 10) + cross-entropy on the next; batch {B}, float64")
    for first, M in ((0, 1), (2, 4)):
        say(f"   ranks {first} -> {first + 1}, M = {M} micro-batch{'es' if M > 1 else ''} of {B // M} rows: "
            f"max |grad - grad_single|  stage 0 {error[first]:.0e}, stage 1 {error[first + 1]:.0e}")
        checks[f"by hand, M = {M}: both stages' gradients == single process (1e-12)"] = (
            max(error[first], error[first + 1]) < 1e-12)
    say(f"   each way {B} x 32 float64 = {B * 32 * 8:,} bytes per step, whatever M: the micro-batches")
    say("   cut the same activations into M messages\n")


# -- 2. schedules as data ------------------------------------------------------------------------
SHORT = {schedules.FORWARD: "F", schedules.BACKWARD: "B", schedules.RECV_ACTIVATION: "rA",
         schedules.SEND_ACTIVATION: "sA", schedules.RECV_GRADIENT: "rG", schedules.SEND_GRADIENT: "sG"}


def short(op, chunks=1):
    """F3 = forward of micro-batch 3, sA3 = send its activation, rG = receive a gradient, ...;
    F3.1: on model chunk 1 (interleaved)."""
    if op.kind == schedules.STEP:
        return "STEP"
    return f"{SHORT[op.kind]}{op.micro}" + (f".{op.chunk}" if chunks > 1 else "")


def compute_order(ops, chunks=1):
    return " ".join(short(op, chunks) for op in ops if op.kind in (schedules.FORWARD, schedules.BACKWARD))


def bubble_formula(name, p, M, v=1):
    return (p - 1) / p if name == "naive" else (p - 1) / (v * M + p - 1)


def schedules_as_data(p, say, checks):
    M = 4
    say(f"2. schedules as data (schedules.build): p = {p} stages, M = {M}; rank 0's op list")
    lists = {name: schedules.build(name, p, M) for name in ("gpipe", "1f1b")}
    for name, ops in lists.items():
        say(f"   {name + ':':<7}" + " ".join(short(op) for op in ops[0]))
    say("   (the same on rank 0: its 1F1B warm-up is p - 1 = 3 forwards; F3 B0; then the cool-down)")
    say("   the order of compute on every rank:")
    for name, ops in lists.items():
        for r in range(p):
            say(f"   {name:<6} rank {r}: {compute_order(ops[r])}")
    say("")
    say("   simulated (simulator.simulate: forward 1, backward 2 per stage; interleaved v = 2 chunks,")
    say("   1/v of that per chunk) against the formula:")
    say(f"   {'':<12}{'M':>3}{'makespan':>10}{'bubble on ranks 0..3':>30}{'formula':>10}")
    for M in (4, 8):
        for name in schedules.SCHEDULES:
            v = 2 if name == "interleaved" else 1
            ops = schedules.build(name, p, M, v)
            schedules.check(ops, p, M, v)                               # raises if ill-formed
            run = simulator.simulate(ops, 1.0 / v, 2.0 / v)
            formula = bubble_formula(name, p, M, v)
            say(f"   {name:<12}{M:>3}{run['makespan']:>10.1f}   " + " ".join(f"{b:.4f}" for b in run["bubble"])
                + f"{formula:>10.4f}")
            checks[f"simulated bubble, {name}, p = {p}, M = {M}: == formula on every rank"] = all(
                abs(b - formula) < 1e-12 for b in run["bubble"])
    say("")
    M = 8
    say(f"   stash peaks (most micro-batches' activations held at once), p = {p}, M = {M}:")
    for name, v, formula in (("gpipe", 1, "M"), ("1f1b", 1, "min(M, p - rank)"),
                             ("interleaved", 2, "chunk activations, min(w_r + 1, vM)")):
        peaks = [schedules.stash_peak(ops) for ops in schedules.build(name, p, M, v)]
        expected = [schedules.expected_stash_peak(name, p, M, r, v) for r in range(p)]
        say(f"   {name:<12}ranks 0..3: {peaks}   formula {formula}: {expected}")
        checks[f"stash peaks, {name}, p = {p}, M = {M}: == formula"] = peaks == expected
    say("   1F1B starts backwards as soon as it can: rank r holds at most p - r micro-batches, not M\n")


# -- 3 and 4. through the runner ----------------------------------------------------------------------
DATA = {}


def runner(comm, strategy, steps, *flags, dtype="float64"):
    """The record of ``python -m strategies.train --strategy STRATEGY ...`` on ``comm``."""
    if dtype not in DATA:                                               # loaded once per process
        DATA[dtype] = loop.load_data(train.parse_args(["--dtype", dtype]))
    args = train.parse_args(["--strategy", strategy, "--model", "mlp7", "--dtype", dtype, "--batch-size", str(B),
                             "--epochs", "1", "--max-steps", str(steps), "--quiet", *flags], quiet=comm.rank != 0)
    return train.run(args, comm, DATA[dtype])


def boundary_widths(stages):
    """|h_s| of every (virtual) stage of mlp7 cut by parameters: one row through each piece."""
    model = models.build("mlp7")
    h, widths = Tensor(np.zeros((1, 784), np.float32)), []
    with no_grad():
        for lo, hi in partition.stage_bounds(partition.balance_by_parameters(model, stages)):
            h = model[lo:hi](h)
            widths.append(h.shape[1])
    return widths


def formula_bytes(rank, p, v, w=8):
    """What rank ``rank`` sends per step: B |h_s| w forward for each of its stages but the last,
    B |h_{s-1}| w backward for each but the first (MATH A4; strategies/pipeline/traffic.py)."""
    widths, V, total = boundary_widths(p * v), p * v, 0
    for chunk in range(v):
        s = schedules.virtual_stage(rank, chunk, p)
        total += B * w * ((widths[s] if s < V - 1 else 0) + (widths[s - 1] if s > 0 else 0))
    return total


def equals_single(comm, alone, steps, say, checks):
    p, M = comm.size, 4
    folder = tempfile.mkdtemp() if comm.rank == 0 else None            # rank 0 saves every model
    save = lambda name: ["--save-params", os.path.join(folder, name)] if folder else []
    if comm.rank == 0:
        runner(alone, "single", steps, *save("single.npz"))
    cuts = partition.balance_by_parameters(models.build("mlp7"), p)
    say(f"3. mlp7 (13 layers) through the runner, --strategy pipeline on {p} ranks, batch {B}, M = {M},")
    say(f"   {steps} steps, float64; cut by parameters into {cuts} layers (--balance); interleaved: 2 chunks each")
    say(f"   {'schedule':<12}{'max |theta - theta_single|':>27}{'stash peaks':>16}   bytes/step of stages 0..3 "
        f"(measured == formula)")
    for name in schedules.SCHEDULES:
        v = 2 if name == "interleaved" else 1
        record = runner(comm, "pipeline", steps, "--schedule", name, "--micro-batches", str(M), *save(f"{name}.npz"))
        if comm.rank == 0:
            with np.load(os.path.join(folder, f"{name}.npz")) as a, np.load(os.path.join(folder, "single.npz")) as b:
                error = max(float(np.abs(a[key] - b[key]).max()) for key in a)
        else:
            error = 0.0
        roles = [record["roles"][f"stage {r}"] for r in range(p)]
        measured = [e["bytes_sent_per_rank_per_step"] for e in roles]
        formula = [e["formula_bytes_sent_per_rank_per_step"] for e in roles]
        by_hand = [formula_bytes(r, p, v) for r in range(p)]
        say(f"   {name:<12}{error:>27.1e}{str(record['stash_peak']):>16}   " + " ".join(f"{m:,.0f}" for m in measured))
        checks[f"pipeline {name} == single process after {steps} steps (1e-10, float64)"] = error <= 1e-10
        checks[f"pipeline {name}: bytes per stage per step == formula"] = bool(
            np.allclose(measured, formula, rtol=1e-12, atol=0) and np.allclose(formula, by_hand, rtol=1e-12, atol=0))
        checks[f"pipeline {name}: stash peaks == formula"] = record["stash_peak"] == [
            schedules.expected_stash_peak(name, p, M, r, v) for r in range(p)]
    if folder:
        shutil.rmtree(folder)
    widths = boundary_widths(p)
    say(f"   stage s sends B |h_s| 8 bytes forward and B |h_(s-1)| 8 back; |h_s| = {widths}: stage 0 sends")
    say(f"   {B} x {widths[0]} x 8 = {B * widths[0] * 8:,}, the same for every schedule of one chunk; interleaved's")
    say("   8 virtual stages cross between ranks 7 times each way, not 3\n")


def measured_bubble(comm, say, checks):
    p, M = comm.size, 8
    formula = (p - 1) / (M + p - 1)
    say("4. the measured bubble: forward padded to 10 ms, backward to 20 ms (--emulate-compute 0.01,0.02),")
    say(f"   p = {p}, M = {M}; the record's bubble, 1 - busy / makespan of the last step, per rank")
    close = lambda bubbles: all(abs(b - formula) <= 0.15 * formula for b in bubbles)
    for name in ("gpipe", "1f1b"):
        for attempt in range(3):           # another busy process only ADDS idle time: retry a miss
            record = runner(comm, "pipeline", 2, "--schedule", name, "--micro-batches", str(M),
                            "--emulate-compute", "0.01,0.02", dtype="float32")
            makespan = max(e[4] for events in record["timeline"] for e in events)
            say(f"   {name:<6} bubble on ranks 0..3: " + " ".join(f"{b:.3f}" for b in record["bubble"])
                + f"   makespan {makespan:.3f} s (formula {M + p - 1} x 0.03 = {(M + p - 1) * 0.03:.2f} s)"
                + (f", try {attempt + 1}" if attempt else ""))
            if close(record["bubble"]):    # the record is the same on every rank: so is this
                break
        checks[f"measured bubble, {name}, p = {p}, M = {M}: within 15 % of 3/11 on every rank"] = close(
            record["bubble"])
    say(f"   (timings vary from run to run) formula (p-1)/(M+p-1) = 3/11 = {formula:.3f}; the measured")
    say("   bubble is a little larger: each message and each wake-up from the padding sleep adds to the step\n")


def main(comm, args):
    alone = comm.split(comm.rank)          # a world of one on every rank: the single-process reference
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    checks = {}
    if comm.size != 4:
        say(f"this tutorial cuts the model into 4 stages, one per rank; launched on {comm.size}")
        return ranks.verdict(comm, {"launched on 4 ranks": False})
    say(f"{comm.size} ranks, rank r = pipeline stage r\n")
    by_hand(comm, say, checks)
    schedules_as_data(comm.size, say, checks)
    equals_single(comm, alone, 3 if args.quick else 20, say, checks)
    measured_bubble(comm, say, checks)
    return ranks.verdict(comm, checks)                               # PASS or FAIL, on every rank


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps (used by the tests)")
    sys.exit(ranks.run(main, parser.parse_args(), world_size=4))
