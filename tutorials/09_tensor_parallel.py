"""Tutorial 9: tensor parallelism - one MLP block split over t ranks (Megatron-LM; MATH A4, F13).

    mpirun -n 4 python -m mpi4py tutorials/09_tensor_parallel.py              (add --quick: faster)
    python tutorials/09_tensor_parallel.py --quick     # the same 4 ranks, as threads (tutorials/ranks.py)

Data parallelism (tutorial 4) copies the model and splits the batch. Tensor parallelism splits
each layer (MATH A4: a layer by columns; F13: each rank owns and updates its block of the
parameters) and gives every rank the same batch. One MLP block Y = relu(X A) B, with A (d, h)
cut by columns into [A_1 ... A_t] and B (h, d) by rows into [B_1; ...; B_t], is

    Y = relu(X [A_1 ... A_t]) [B_1; ...; B_t] = sum_i relu(X A_i) B_i

because relu acts entry by entry, so relu of a column block is the column block of relu. Rank i
computes its term Z_i = relu(X A_i) B_i on its own; the ranks meet twice per block (Megatron's
conjugate operators, strategies/tensor_parallel/operators.py):

    g  (after B)    forward  Y = sum_i Z_i   one all-reduce     backward  identity
    f  (before A)   forward  identity                           backward  dX = sum_i dX_i, one all-reduce

so a block costs 2 ring all-reduces of the activation, 2 x 2 (t - 1)/t n bytes per rank for an
activation of n bytes, whatever the hidden width h. This script
  1. does one block by hand in NumPy on t = 2 ranks (forward and the backward for dA_i, dB_i and
     dX), against the unsplit product (float64, 1e-12), and counts its bytes;
  2. does it with the library's ColumnParallelLinear / RowParallelLinear (and with copy_to_tp /
     reduce_from_tp around plain F.linear): equal to the unsharded Linear pair at t = 1, 2, 4,
     bytes per block == 2 x the ring all-reduce formula; then uneven widths (127 over 4 ranks:
     31 32 32 32, shard_bounds);
  3. trains mlp7 through the runner (strategies/train.py): --strategy tp at tp = 2 and 4, and the
     dp x pp x tp grids 2x1x2 and 1x2x2, each equal to the single process (float64, 1e-10),
     with the bytes of every role equal to the formula (strategies/pipeline/traffic.py);
  4. ends with PASS or FAIL.
Read strategies/tensor_parallel/ alongside (its __init__.py is its map).
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

import collectives
import engine.functional as F
from engine import Tensor, manual_seed, nn
from strategies import train
from strategies.parameter_server.shards import shard_bounds
from strategies.tensor_parallel import ColumnParallelLinear, RowParallelLinear, copy_to_tp, reduce_from_tp
from strategies.traffic import allreduce_bytes

import ranks  # tutorials/ranks.py: 4 ranks from mpirun, or as threads here

N, D, H = 8, 16, 24                      # the batch, the block's width d and hidden width h


def relu(a):
    return np.maximum(a, 0.0)


def allreduce(comm, array):
    """sum over the ranks of ``comm`` (the ring all-reduce of tutorial 3)."""
    return collectives.allreduce(comm, array, "ring", "sum", check=False) if comm.size > 1 else array


def tp_groups(comm, t):
    """This rank's group of t consecutive ranks: 4 ranks are 4 / t independent tp groups."""
    return comm.split(comm.rank // t, comm.rank, name=f"tp{t}")


# -- 1. one block by hand ----------------------------------------------------------------------------
def by_hand(comm, say, checks):
    t = 2
    tp = tp_groups(comm, t)                                            # ranks {0, 1} and {2, 3}
    rng = np.random.default_rng(0)                                     # every rank: the same X, A, B, G
    X, A, B = rng.standard_normal((N, D)), rng.standard_normal((D, H)), rng.standard_normal((H, D))
    G = rng.standard_normal((N, D))                                    # dL/dY, from the layers above
    lo, hi = shard_bounds(H, t)[tp.rank]                               # my hidden units lo:hi
    A_i, B_i = A[:, lo:hi], B[lo:hi, :]                                # A by columns, B by rows
    say(f"1. Y = relu(X A) B by hand on t = {t} ranks: X {X.shape}, A {A.shape} = [A_1 A_2], "
        f"B {B.shape} = [B_1; B_2]; rank i holds hidden units {shard_bounds(H, t)}")

    sent0 = tp.counters.bytes_sent
    P_i = X @ A_i                                                      # (N, h/t)   pre-activation
    H_i = relu(P_i)                                                    # (N, h/t)   its own block
    Z_i = H_i @ B_i                                                    # (N, d)     a partial sum
    Y = allreduce(tp, Z_i)                                             # g: Y = sum_i Z_i
    dB_i = H_i.T @ G                                                   # (h/t, d)   no message
    dP_i = (G @ B_i.T) * (P_i > 0)                                     # (N, h/t)   g backward: G
    dA_i = X.T @ dP_i                                                  # (d, h/t)   no message
    dX = allreduce(tp, dP_i @ A_i.T)                                   # f backward: dX = sum_i dX_i
    sent = tp.counters.bytes_sent - sent0

    P = X @ A                                                          # the unsplit block
    Y_ref, dP = relu(P) @ B, (G @ B.T) * (P > 0)
    errors = {"Y": np.abs(Y - Y_ref).max(), "dX": np.abs(dX - dP @ A.T).max(),
              "dA_i": np.abs(dA_i - (X.T @ dP)[:, lo:hi]).max(),
              "dB_i": np.abs(dB_i - (relu(P).T @ G)[lo:hi]).max()}
    formula = 2 * allreduce_bytes("ring", t, X.nbytes)                 # g forward + f backward
    for name, error in errors.items():
        say(f"   max |{name:<4} - unsplit| = {error:.1e}")
        checks[f"by hand, t = 2: {name} == the unsplit block's (1e-12, float64)"] = error < 1e-12
    say(f"   bytes sent per rank: {sent:,} = 2 all-reduces x 2 (t-1)/t x {X.nbytes:,} B = {formula:,.0f}\n")
    checks["by hand, t = 2: bytes per rank == 2 x ring all-reduce of the activation"] = sent == formula


# -- 2. the library's layers --------------------------------------------------------------------------
def whole_block(d_in, h, d_out):
    manual_seed(0)                                                     # every rank: the same block
    return nn.Sequential(nn.Linear(d_in, h, dtype=np.float64), nn.ReLU(),
                         nn.Linear(h, d_out, dtype=np.float64))


def forward_backward(fn, x, seed=3):
    """(Y, dL/dx) for L = sum(Y * G) (so dL/dY = G, fixed): x stands for an earlier layer's
    output, so it requires its gradient and f's backward has something to sum."""
    x = Tensor(x.copy(), requires_grad=True)
    out = fn(x)
    G = np.random.default_rng(seed).standard_normal(out.shape)
    (out * Tensor(G)).sum().backward()
    return out.data, x.grad


def library(comm, say, checks):
    x = np.random.default_rng(1).standard_normal((N, D))
    say(f"2. the library: ColumnParallelLinear({D} -> {H}) -> ReLU -> RowParallelLinear({H} -> {D}), "
        f"x {x.shape} float64 = {x.nbytes:,} B")
    say(f"   {'t':>3}{'max |diff| layers':>19}{'f, g by hand':>14}{'grads':>10}"
        f"{'bytes/rank':>12}{'2 R(t, n)':>11}{'messages':>10}")
    whole = whole_block(D, H, D)
    y_ref, dx_ref = forward_backward(whole, x)
    for t in (1, 2, 4):
        tp = tp_groups(comm, t)
        column, row = ColumnParallelLinear(whole[0], tp, "0"), RowParallelLinear(whole[2], tp, "2")
        counters = tp.counters
        bytes0, messages0 = counters.bytes_sent, counters.messages_sent
        y, dx = forward_backward(lambda v: row(F.relu(column(v))), x)
        sent, messages = counters.bytes_sent - bytes0, counters.messages_sent - messages0

        def by_operators(v):                                           # the same, f and g spelled out
            h = F.relu(F.linear(copy_to_tp(v, tp), column.weight, column.bias))
            return reduce_from_tp(F.linear(h, row.weight), tp) + row.bias
        y_ops, dx_ops = forward_backward(by_operators, x)

        lo, hi = column.lo, column.hi                                  # this rank's gradients: blocks
        grads = max(np.abs(column.weight.grad - 2 * whole[0].weight.grad[lo:hi]).max(),   # 2 backwards
                    np.abs(row.weight.grad - 2 * whole[2].weight.grad[:, lo:hi]).max())   # (layers, ops)
        layers_error = max(np.abs(y - y_ref).max(), np.abs(dx - dx_ref).max())
        ops_error = max(np.abs(y_ops - y_ref).max(), np.abs(dx_ops - dx_ref).max())
        formula = 2 * allreduce_bytes("ring", t, x.nbytes)
        say(f"   {t:>3}{layers_error:>19.1e}{ops_error:>14.1e}{grads:>10.1e}{sent:>12,}{formula:>11,.0f}"
            f"{messages:>10}")
        checks[f"t = {t}: the split block == the unsharded Linear pair (Y, dx, grads; 1e-12)"] = (
            max(layers_error, ops_error, grads) < 1e-12)
        checks[f"t = {t}: bytes per block == 2 x ring all-reduce formula, 4 (t-1) messages"] = (
            sent == formula and messages == 4 * (t - 1))
    say("   (R(t, n) = 2 (t-1)/t n: g's all-reduce of Y forward, f's of dx backward; nothing for t = 1)")

    t, wide = 4, whole_block(10, 127, 5)                               # uneven: 127 hidden over 4 ranks
    tp = tp_groups(comm, t)
    column, row = ColumnParallelLinear(wide[0], tp, "0"), RowParallelLinear(wide[2], tp, "2")
    blocks = collectives.all_gather(tp, np.array([column.lo, column.hi, row.lo, row.hi]))
    x = np.random.default_rng(2).standard_normal((N, 10))
    y_ref, dx_ref = forward_backward(wide, x)
    bytes0 = tp.counters.bytes_sent
    y, dx = forward_backward(lambda v: row(F.relu(column(v))), x)
    sent = tp.counters.bytes_sent - bytes0
    error = max(np.abs(y - y_ref).max(), np.abs(dx - dx_ref).max())
    formula = allreduce_bytes("ring", t, N * 5 * 8) + allreduce_bytes("ring", t, x.nbytes)
    widths = [int(hi - lo) for lo, hi, _, _ in blocks]
    say(f"   uneven: Linear(10 -> 127) -> ReLU -> Linear(127 -> 5) on t = 4: hidden blocks "
        f"{[(int(a), int(b)) for a, b, _, _ in blocks]}, widths {widths}")
    say(f"   max |diff| {error:.1e}; bytes/rank {sent:,} = R(4, Y: {N * 5 * 8} B) + R(4, dx: {x.nbytes} B) "
        f"= {formula:,.0f}\n")
    checks["uneven: 127 over 4 = 31 32 32 32, column and row blocks the same"] = (
        widths == [31, 32, 32, 32] and all((b[0], b[1]) == (b[2], b[3]) for b in blocks)
        and [tuple(b[:2]) for b in blocks] == shard_bounds(127, 4))
    checks["uneven: the split block == the unsharded pair (1e-12), bytes == formula"] = (
        error < 1e-12 and sent == formula)


# -- 3. through the runner ---------------------------------------------------------------------------
def runner(comm, strategy, steps, *flags, save=None):
    """The record of ``python -m strategies.train --strategy STRATEGY --model mlp7 ...`` on ``comm``."""
    args = train.parse_args(["--strategy", strategy, "--model", "mlp7", "--dtype", "float64",
                             "--batch-size", "48", "--epochs", "1", "--max-steps", str(steps), "--quiet",
                             *flags, *(["--save-params", save] if save else [])], quiet=comm.rank != 0)
    return train.run(args, comm)


def through_the_runner(comm, alone, steps, say, checks):
    folder = tempfile.mkdtemp() if comm.rank == 0 else None            # rank 0 saves every model
    save = lambda name: os.path.join(folder, name) if folder else None  # noqa: E731
    if comm.rank == 0:
        runner(alone, "single", steps, save=save("single.npz"))
    say(f"3. mlp7 (784-128-127-126-125-124-123-10) through the runner, {steps} SGD steps at batch 48, float64")
    say(f"   {'run':<36}{'max |theta - single|':>21}   {'role':<9}{'ranks':<14}{'bytes/rank/step':>16}{'formula':>10}")
    runs = [("--strategy tp, tp = 2", "tp", 2, []), ("--strategy tp, tp = 4", "tp", 4, []),
            ("dp x pp x tp = 2 x 1 x 2", "pipeline", 4, ["--dp", "2", "--pp", "1", "--tp", "2"]),
            ("dp x pp x tp = 1 x 2 x 2", "pipeline", 4, ["--dp", "1", "--pp", "2", "--tp", "2"])]
    for label, strategy, size, flags in runs:
        group = comm.split(comm.rank // size, comm.rank, name="runner")   # tp = 2: two groups, both run
        mine = save("run.npz") if comm.rank == 0 else None              # world rank 0's group saves
        record = runner(group, strategy, steps, *flags, "--micro-batches", "2", save=mine)
        error = None
        if comm.rank == 0:
            with np.load(save("run.npz")) as a, np.load(save("single.npz")) as b:
                error = max(float(np.abs(a[key] - b[key]).max()) for key in b)
        first, shown = True, "" if error is None else f"{error:.1e}"
        for role, entry in record["roles"].items():
            measured, formula = entry["bytes_sent_per_rank_per_step"], entry["formula_bytes_sent_per_rank_per_step"]
            say(f"   {label if first else '':<36}{shown if first else '':>21}   {role:<9}"
                f"{str(entry['ranks']):<14}{measured:>16,.0f}{formula:>10,.0f}")
            first = False
            checks[f"{label}: bytes per {role} per step == formula"] = bool(np.isclose(measured, formula, rtol=1e-12))
        if comm.rank == 0:
            checks[f"{label} == single process after {steps} steps (1e-10, float64)"] = error <= 1e-10
    if folder:
        shutil.rmtree(folder)
    say("   (stage 0's input is the data: its first column layer's f sends nothing back; the 2 x 1 x 2")
    say("   grid also all-reduces each rank's gradient shard over dp; 1 x 2 x 2 sends activations between stages)\n")


def main(comm, args):
    alone = comm.split(comm.rank)          # a world of one on every rank: the single-process reference
    say = print if comm.rank == 0 else (lambda *a, **k: None)
    checks = {}
    if comm.size != 4:                     # tp groups of 1, 2 and 4 ranks and the grids of 4
        say(f"this tutorial runs on 4 ranks (tp = 1, 2, 4 and the grids of 4); launched on {comm.size}")
        return ranks.verdict(comm, {"launched on 4 ranks": False})
    say(f"{comm.size} ranks; a tp group of t ranks is t consecutive ranks (4 / t groups run side by side)\n")
    by_hand(comm, say, checks)
    library(comm, say, checks)
    through_the_runner(comm, alone, 3 if args.quick else 20, say, checks)
    return ranks.verdict(comm, checks)                               # PASS or FAIL, on every rank


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer steps (used by the tests)")
    sys.exit(ranks.run(main, parser.parse_args(), world_size=4))
